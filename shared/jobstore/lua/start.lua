-- start: a worker takes a batch of jobs under one run token, by Redis' clock.
--
--   queued                       -> running, leased to this run (or failed: deadline passed)
--   running, lease expired       -> running again, leased to this run (its worker or Redis
--                                   was lost), or failed once it has had `max_runs` runs
--   running under this run       -> run (a retried call whose reply was lost: the first call
--                                   leased it already; lease and run count stay as they are)
--   running, lease alive         -> left alone: a redelivered message while its worker lives
--   anything else                -> left alone (cancelled, finished, gone)
--
-- A job failed here is compacted as finish.lua does. The first write is a deletion: under
-- maxmemory Redis refuses a script's memory-growing command only while the script has
-- written nothing, and taking up jobs (which frees memory once they finish) must go on when
-- Redis is full.
--
-- KEYS[1]      the running set (sorted set: job id -> when its lease ends)
-- KEYS[2..]    six keys per job (see _routes.lua; the queued set is the one rescue.lua reads)
-- then         the webhook queue's four keys (see _webhooks.lua; Keyspace.absent without hooks)
-- ARGV[1]      JSON:
--   expired    the error (JSON) recorded on a job whose deadline passed
--   lost       the error (JSON) recorded on a job lost more times than `max_runs` allows
--   channel    the channel that finished job ids are published on
--   max_runs   most runs a job may have (a job that keeps losing its worker fails after these)
--   run        this run's token (a later finish must show it: see finish.lua)
--   lease      lease length in seconds
--   keep       seconds a finished job's record is kept
--   ids        the job ids, in KEYS' order
--   seen       per job, its routing fields as the caller read them (see _routes.lua)
--   hooks      webhook templates and doorbell (see _webhooks.lua), or false: none queued
--
-- Returns 'stale' (nothing written) when routing fields changed, else per job {status
-- before the call ('' when the record is gone), what this call did ('run', 'expired',
-- 'lost' or ''), the job's webhook events ('' for none), the job's input when this call
-- leased it to the run ('' otherwise)}. The webhook deliveries due are queued here: `running`
-- for a queued job this call starts, `completed` for one it fails.
local a = cjson.decode(ARGV[1])
local rows = routed_fields(2, a.seen, {'status', 'deadline', 'webhook_events', 'lease_until', 'runs', 'input',
                                        'run', 'webhook_url'})
if not rows then return 'stale' end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local stamp = string.format('%.6f', now)  -- Lua's own formatting keeps only 14 digits
local out, ended = {}, {}
local hk = 2 + 6 * #a.ids  -- the webhook queue's keys
for i, id in ipairs(a.ids) do
  local k = job_keys(2, i)
  local key = k.record
  local f = rows[i]
  local hook_fields = {f[8], f[3]}
  local status, verdict, input = f[1], '', ''
  local lease_ended = status == 'running' and (tonumber(f[4]) or 0) <= now
  if status == 'running' and f[7] == a.run then
    verdict, input = 'run', f[6] or ''
  elseif status == 'queued' or lease_ended then
    redis.call('HDEL', key, 'tag')  -- the message was delivered: nothing left to rescue
    redis.call('ZREM', k.queued, id)
    if status == 'queued' and f[2] and tonumber(f[2]) < now then
      verdict = 'expired'
      redis.call('HDEL', key, 'input', 'queue', 'cache_key')
      redis.call('HSET', key, 'status', 'failed', 'error', a.expired, 'finished_at', stamp)
    elseif lease_ended and (tonumber(f[5]) or 0) >= a.max_runs then
      verdict = 'lost'
      redis.call('HDEL', key, 'input', 'queue', 'cache_key', 'lease_until', 'runs')
      redis.call('HSET', key, 'status', 'failed', 'error', a.lost, 'finished_at', stamp, 'run', '')
      redis.call('ZREM', KEYS[1], id)
    else
      verdict, input = 'run', f[6] or ''
      local lease = now + a.lease
      local runs = tostring((tonumber(f[5]) or 0) + 1)
      if status == 'queued' then
        redis.call('HSET', key, 'status', 'running', 'run', a.run, 'lease_until', string.format('%.6f', lease),
                   'runs', runs, 'started_at', stamp)
        webhook_event(key, id, 'running', a.hooks, hk, hook_fields)
      else
        redis.call('HSET', key, 'status', 'running', 'run', a.run, 'lease_until', string.format('%.6f', lease),
                   'runs', runs)
      end
      redis.call('ZADD', KEYS[1], lease, id)
    end
    if verdict ~= 'run' then
      redis.call('EXPIRE', key, a.keep)
      held_until(k.active, id, now + a.keep)  -- held as long as its record
      if a.seen[i][3] ~= '' then batch_ended(k.hook, k.hook_queue, a.hooks, hk) end
      webhook_event(key, id, 'completed', a.hooks, hk, hook_fields)
      ended[#ended + 1] = id
    end
  end
  out[i] = {status or '', verdict, f[3] or '', input}
end
if #ended > 0 then redis.call('PUBLISH', a.channel, table.concat(ended, ',')) end
return out

-- start: a worker takes a batch of jobs under one run token, by Redis' clock.
--
--   queued                       -> running, leased to this run (or failed: deadline passed)
--   running, lease expired       -> running again, leased to this run (its worker or Redis
--                                   was lost), or failed once it has had ARGV[7] runs
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
-- KEYS[i]  job i's record
-- ARGV[1]  the error (JSON) recorded on a job whose deadline passed
-- ARGV[2]  the error (JSON) recorded on a job lost more times than ARGV[7] allows
-- ARGV[3]  the channel that finished job ids are published on
-- ARGV[4]  the queued sets' prefix (one set per queue, named by the record's 'queue'; see rescue.lua)
-- ARGV[5]  the running set (sorted set: job id -> when its lease ends)
-- ARGV[6]  the job key prefix (KEYS[i] = prefix .. id)
-- ARGV[7]  most runs a job may have (a job that keeps losing its worker fails after these)
-- ARGV[8]  this run's token (a later finish must show it: see finish.lua)
-- ARGV[9]  lease length in seconds
-- ARGV[10] seconds a finished job's record is kept
-- ARGV[11] the owners' active sets' prefix (named by the record's 'owner': see create.lua)
--
-- Returns, per key, {status before the call ('' when the record is gone), what this call
-- did ('run', 'expired', 'lost' or ''), the job's webhook events ('' for none), the job's
-- input when this call leased it to the run ('' otherwise)}.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local stamp = string.format('%.6f', now)  -- Lua's own formatting keeps only 14 digits
local prefix_length = #ARGV[6]
local out, ended = {}, {}
for i, key in ipairs(KEYS) do
  local id = string.sub(key, prefix_length + 1)
  local f = redis.call('HMGET', key, 'status', 'deadline', 'webhook_events', 'lease_until', 'runs', 'queue', 'input', 'owner', 'batch', 'run')
  local status, verdict, input = f[1], '', ''
  local lease_ended = status == 'running' and (tonumber(f[4]) or 0) <= now
  if status == 'running' and f[10] == ARGV[8] then
    verdict, input = 'run', f[7] or ''
  elseif status == 'queued' or lease_ended then
    redis.call('HDEL', key, 'tag')  -- the message was delivered: nothing left to rescue
    redis.call('ZREM', ARGV[4] .. (f[6] or ''), id)
    if status == 'queued' and f[2] and tonumber(f[2]) < now then
      verdict = 'expired'
      redis.call('HDEL', key, 'input', 'queue', 'cache_key')
      redis.call('HSET', key, 'status', 'failed', 'error', ARGV[1], 'finished_at', stamp)
    elseif lease_ended and (tonumber(f[5]) or 0) >= tonumber(ARGV[7]) then
      verdict = 'lost'
      redis.call('HDEL', key, 'input', 'queue', 'cache_key', 'lease_until', 'runs')
      redis.call('HSET', key, 'status', 'failed', 'error', ARGV[2], 'finished_at', stamp, 'run', '')
      redis.call('ZREM', ARGV[5], id)
    else
      verdict, input = 'run', f[7] or ''
      local lease = now + tonumber(ARGV[9])
      redis.call('HSET', key, 'status', 'running', 'run', ARGV[8], 'lease_until', string.format('%.6f', lease))
      if status == 'queued' then redis.call('HSET', key, 'started_at', stamp) end
      redis.call('HINCRBY', key, 'runs', 1)
      redis.call('ZADD', ARGV[5], lease, id)
    end
    if verdict ~= 'run' then
      redis.call('EXPIRE', key, ARGV[10])
      if f[8] then redis.call('ZREM', ARGV[11] .. f[8], id) end
      batch_ended(f[9])
      ended[#ended + 1] = id
    end
  end
  out[i] = {status or '', verdict, f[3] or '', input}
end
if #ended > 0 then redis.call('PUBLISH', ARGV[3], table.concat(ended, ',')) end
return out

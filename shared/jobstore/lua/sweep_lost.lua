-- sweep_lost: fail running jobs whose lease ended long ago and that nobody took over: their
-- worker died and their message is gone too (lost with a Redis crash), so no redelivery will
-- come. Without this they would stay 'running' forever. The failed record is compacted as
-- finish.lua does, and the first write is a deletion, so this goes on when Redis is full.
-- The candidates come from overdue.lua; one whose lease was renewed since is left alone.
--
-- KEYS[1]    the running set (sorted set: job id -> when its lease ends)
-- KEYS[2..]  six keys per candidate (see _routes.lua)
-- then       the webhook queue's four keys (see _webhooks.lua; Keyspace.absent without hooks)
-- ARGV[1]    JSON:
--   grace    seconds after a lease ends (at least the visibility timeout: a message kombu
--            still holds is redelivered, and its job taken over, within it)
--   error    the error (JSON) recorded on such a job
--   channel  the channel that finished job ids are published on
--   keep     seconds a finished job's record is kept
--   ids      the candidates' job ids, in KEYS' order
--   seen     per candidate, its routing fields as the caller read them (see _routes.lua)
--   hooks    webhook templates and doorbell (see _webhooks.lua), or false: none queued
--
-- Returns 'stale' (nothing written) when routing fields changed, else, per job it failed,
-- {its id, its webhook events ('' for none)}.
local a = cjson.decode(ARGV[1])
if routes_changed(2, a.seen) then return 'stale' end
local t = redis.call('TIME')
local cutoff = tonumber(t[1]) - a.grace
local failed = {}
local hk = 2 + 6 * #a.ids  -- the webhook queue's keys
for i, id in ipairs(a.ids) do
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= cutoff then
    redis.call('ZREM', KEYS[1], id)
    local k = job_keys(2, i)
    local f = redis.call('HMGET', k.record, 'status', 'lease_until', 'webhook_events')
    if f[1] == 'running' and (tonumber(f[2]) or 0) <= cutoff then
      redis.call('HDEL', k.record, 'input', 'queue', 'cache_key', 'lease_until', 'runs')
      redis.call('HSET', k.record, 'status', 'failed', 'error', a.error, 'finished_at', t[1], 'run', '')
      redis.call('EXPIRE', k.record, a.keep)
      held_until(k.active, id, tonumber(t[1]) + a.keep)  -- held as long as its record
      batch_ended(k.hook, k.hook_queue, a.hooks, hk)
      webhook_event(k.record, id, 'completed', a.hooks, hk)
      failed[#failed + 1] = {id, f[3] or ''}
    end
  end
end
local ids = {}
for i, row in ipairs(failed) do ids[i] = row[1] end
if #ids > 0 then redis.call('PUBLISH', a.channel, table.concat(ids, ',')) end
return failed

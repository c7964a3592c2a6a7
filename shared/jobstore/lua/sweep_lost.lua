-- sweep_lost: fail running jobs whose lease ended long ago and that nobody took over: their
-- worker died and their message is gone too (lost with a Redis crash), so no redelivery will
-- come. Without this they would stay 'running' forever. The failed record is compacted as
-- finish.lua does, and the first write is a deletion, so this goes on when Redis is full.
--
-- KEYS[1]  the running set (sorted set: job id -> when its lease ends)
-- ARGV[1]  grace in seconds after a lease ends (at least the visibility timeout: a message
--          kombu still holds is redelivered, and its job taken over, within it)
-- ARGV[2]  the error (JSON) recorded on such a job
-- ARGV[3]  the channel that finished job ids are published on
-- ARGV[4]  the job key prefix
-- ARGV[5]  most jobs to look at in this call
-- ARGV[6]  seconds a finished job's record is kept
-- ARGV[7]  the owners' active sets' prefix (named by the record's 'owner')
--
-- Returns, per job it failed, {its id, its webhook events ('' for none)}.
local t = redis.call('TIME')
local cutoff = tonumber(t[1]) - tonumber(ARGV[1])
local failed = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[5]))) do
  redis.call('ZREM', KEYS[1], id)
  local key = ARGV[4] .. id
  local f = redis.call('HMGET', key, 'status', 'lease_until', 'webhook_events', 'owner', 'batch')
  if f[1] == 'running' and (tonumber(f[2]) or 0) <= cutoff then
    redis.call('HDEL', key, 'input', 'queue', 'cache_key', 'lease_until', 'runs')
    redis.call('HSET', key, 'status', 'failed', 'error', ARGV[2], 'finished_at', t[1], 'run', '')
    redis.call('EXPIRE', key, ARGV[6])
    if f[4] then redis.call('ZREM', ARGV[7] .. f[4], id) end
    batch_ended(f[5])
    failed[#failed + 1] = {id, f[3] or ''}
  end
end
local ids = {}
for i, row in ipairs(failed) do ids[i] = row[1] end
if #ids > 0 then redis.call('PUBLISH', ARGV[3], table.concat(ids, ',')) end
return failed

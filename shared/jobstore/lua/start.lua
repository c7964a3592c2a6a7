-- start: a worker takes a batch of jobs. queued -> running, or queued -> failed when the
-- job's deadline has passed. Jobs in any other state are left as they are.
--
-- KEYS[i]  job i's record
-- ARGV[1]  now (Unix seconds)
-- ARGV[2]  the error (JSON) recorded on a job whose deadline passed
-- ARGV[3]  the channel that finished job ids are published on
-- ARGV[4]  the queued set (sorted set of job ids; see rescue.lua)
-- ARGV[5]  the job key prefix (KEYS[i] = prefix .. id)
--
-- Returns, per key, {status before the call ('' when the record is gone, 'expired' when
-- this call failed it for its deadline), its webhook events ('' for none)}.
local prefix_length = #ARGV[5]
local out, expired = {}, {}
for i, key in ipairs(KEYS) do
  local id = string.sub(key, prefix_length + 1)
  local f = redis.call('HMGET', key, 'status', 'deadline', 'webhook_events')
  local status = f[1]
  if status == 'queued' then
    redis.call('HDEL', key, 'message')
    redis.call('ZREM', ARGV[4], id)
    if f[2] and tonumber(f[2]) < tonumber(ARGV[1]) then
      redis.call('HSET', key, 'status', 'failed', 'error', ARGV[2], 'finished_at', ARGV[1])
      expired[#expired + 1] = id
      status = 'expired'
    else
      redis.call('HSET', key, 'status', 'running', 'started_at', ARGV[1])
    end
  end
  out[i] = {status or '', f[3] or ''}
end
if #expired > 0 then redis.call('PUBLISH', ARGV[3], table.concat(expired, ',')) end
return out

-- cancel: queued -> cancelled. A job in any other state is left as it is.
--
-- KEYS[1]  the job's record
-- KEYS[2]  the queued set (sorted set of job ids; see rescue.lua)
-- ARGV[1]  now (Unix seconds)
-- ARGV[2]  the channel that finished job ids are published on
-- ARGV[3]  the job id
-- ARGV[4..] record fields to return
--
-- Returns {status before the call ('' when the record is gone), the record's ARGV[4..]
-- fields after the call}.
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[1])
  redis.call('HDEL', KEYS[1], 'message')
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return {status or '', redis.call('HMGET', KEYS[1], unpack(ARGV, 4))}

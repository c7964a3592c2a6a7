-- cancel: queued -> cancelled, by Redis' clock. A job in any other state is left as it is.
--
-- KEYS[1]  the job's record
-- ARGV[1]  the channel that finished job ids are published on
-- ARGV[2]  the job id
-- ARGV[3]  the queued sets' prefix (one set per queue, named by the record's 'queue')
-- ARGV[4..] record fields to return
--
-- Returns {status before the call ('' when the record is gone), the record's ARGV[4..]
-- fields after the call}.
local status, queue = unpack(redis.call('HMGET', KEYS[1], 'status', 'queue'))
if status == 'queued' then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', t[1] .. '.' .. string.format('%06d', t[2]))
  redis.call('HDEL', KEYS[1], 'message')
  redis.call('ZREM', ARGV[3] .. (queue or ''), ARGV[2])
  redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return {status or '', redis.call('HMGET', KEYS[1], unpack(ARGV, 4))}

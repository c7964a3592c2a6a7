-- cancel: queued -> cancelled, by Redis' clock. A job in any other state is left as it is.
-- The cancelled record is compacted as finish.lua does; the first write is that deletion,
-- so a cancel (which frees memory) goes through when Redis is full (see finish.lua).
--
-- KEYS[1]  the job's record
-- ARGV[1]  the channel that finished job ids are published on
-- ARGV[2]  the job id
-- ARGV[3]  the queued sets' prefix (one set per queue, named by the record's 'queue')
-- ARGV[4]  seconds a finished job's record is kept
-- ARGV[5]  the owners' active sets' prefix (named by the record's 'owner')
-- ARGV[6]  the caller's key id: another owner's job is left alone and reported as gone
--          ('' for a caller who may cancel any job)
-- ARGV[7..] record fields to return
--
-- Returns {status before the call ('' when the record is gone), the record's ARGV[7..]
-- fields after the call}.
local status, queue, owner, batch = unpack(redis.call('HMGET', KEYS[1], 'status', 'queue', 'owner', 'batch'))
if ARGV[6] ~= '' and owner ~= ARGV[6] then return {'', {}} end
if status == 'queued' then
  redis.call('HDEL', KEYS[1], 'input', 'tag', 'queue', 'cache_key')
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', t[1] .. '.' .. string.format('%06d', t[2]))
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('ZREM', ARGV[3] .. (queue or ''), ARGV[2])
  if owner then redis.call('ZREM', ARGV[5] .. owner, ARGV[2]) end
  batch_ended(batch)
  redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return {status or '', redis.call('HMGET', KEYS[1], unpack(ARGV, 7))}

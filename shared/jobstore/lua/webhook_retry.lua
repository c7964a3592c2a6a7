-- webhook_retry: schedule the next attempt of a webhook delivery. The attempt waits in Redis,
-- not in a worker's memory, so it survives worker restarts; webhook_due.lua moves it onto the
-- webhook queue once due. Both read Redis' clock, so no two clocks disagree.
--
-- KEYS[1]  the retry schedule (sorted set: task message -> when it is due, Unix seconds)
-- KEYS[2]  the job's record
-- KEYS[3]  the owner's held records (see _held.lua; Keyspace.absent without an owner): the
--          record's count there follows its longer life
-- ARGV[1]  seconds from now until the attempt is due
-- ARGV[2]  seconds the record is kept after the attempt is due, at least (a schedule may
--          outlast the record's TTL)
-- ARGV[3]  the delivery's task message
-- ARGV[4]  the record's member there ('' without an owner)
--
-- Returns 1, or 0 when the record is gone (nothing is scheduled, nothing brought back).
local ttl = redis.call('TTL', KEYS[2])
if ttl == -2 then return 0 end
local keep = math.ceil(tonumber(ARGV[1]) + tonumber(ARGV[2]))
local now = redis.call('TIME')
if ttl >= 0 and ttl < keep then
  redis.call('EXPIRE', KEYS[2], keep)
  if ARGV[4] ~= '' then held_longer(KEYS[3], ARGV[4], tonumber(now[1]) + keep) end
end
redis.call('ZADD', KEYS[1], tonumber(now[1]) + tonumber(now[2]) / 1e6 + tonumber(ARGV[1]), ARGV[3])
return 1

-- heartbeat: a worker says it is consuming, and what it serves. Readiness reads one sorted
-- set instead of scanning the keyspace for per-worker keys; Redis' clock decides, so no two
-- clocks disagree.
--
-- KEYS[1]  live workers (sorted set: worker name -> when its heartbeat lapses)
-- KEYS[2]  what each worker serves (hash: worker name -> JSON of its loaded and failed models)
-- ARGV[1]  the worker's name
-- ARGV[2]  seconds the heartbeat lasts
-- ARGV[3]  what it serves (JSON)
--
-- Also forgets workers whose heartbeat lapsed. That deletion comes first: under maxmemory
-- Redis refuses a script's memory-growing command only while the script has written
-- nothing, and a worker must stay visible when Redis is full. Returns nothing.
local now = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
for _, name in ipairs(redis.call('HKEYS', KEYS[2])) do  -- as many as there are workers
  if not redis.call('ZSCORE', KEYS[1], name) then redis.call('HDEL', KEYS[2], name) end
end
return false

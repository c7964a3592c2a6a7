-- heartbeat: a worker says it is consuming. Readiness reads one sorted set instead of
-- scanning the keyspace for per-worker keys; Redis' clock decides, so no two clocks disagree.
--
-- KEYS[1]  live workers (sorted set: worker name -> when its heartbeat lapses)
-- ARGV[1]  the worker's name
-- ARGV[2]  seconds the heartbeat lasts
--
-- Also drops workers whose heartbeat lapsed. Returns nothing.
local now = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return false

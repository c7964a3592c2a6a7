-- workers: the names of workers whose heartbeat is current (see heartbeat.lua).
--
-- KEYS[1]  live workers (sorted set: worker name -> when its heartbeat lapses)
--
-- Returns the names.
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. redis.call('TIME')[1], '+inf')

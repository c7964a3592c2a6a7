-- backlog: a fair queue's jobs waiting, per lane, and delivered to a worker but not yet
-- acknowledged (its held set: kombu's `unacked` hash is every queue's, Celery's pidbox
-- replies included, so its length is not this queue's). O(1) whatever the backlog.
--
-- KEYS[1]  the fair queue's state (hash: depth per lane)
-- KEYS[2]  the fair queue's held set (set of delivery tags)
--
-- Returns {waiting high, waiting normal, waiting low, in flight}.
local depth = redis.call('HMGET', KEYS[1], 'depth:high', 'depth:normal', 'depth:low')
return {tonumber(depth[1]) or 0, tonumber(depth[2]) or 0, tonumber(depth[3]) or 0, redis.call('SCARD', KEYS[2])}

-- backlog: a fair queue's jobs waiting, per lane, and delivered to a worker but not yet
-- acknowledged (its held set: kombu's `unacked` hash is every queue's, Celery's pidbox
-- replies included, so its length is not this queue's). O(1) whatever the backlog.
--
-- KEYS[1]  the fair queue's state (hash: depth per lane)
-- KEYS[2]  the fair queue's held set (set of delivery tags)
--
-- Returns {waiting high, waiting normal, waiting low, in flight}.
local depth = lane_depths(KEYS[1])
return {depth[1], depth[2], depth[3], redis.call('SCARD', KEYS[2])}

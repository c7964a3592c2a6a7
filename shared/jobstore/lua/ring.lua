-- ring: a doorbell in a fair queue's Celery list when jobs wait and it has none (one that
-- a worker took by BRPOP and then lost, dying, would leave them unseen; each worker's
-- heartbeat calls this). See shared/broker/fair.py.
--
-- KEYS[1]  the Celery list
-- KEYS[2]  the fair queue's state (hash: depth per lane)
-- ARGV[1]  the doorbell
--
-- Returns 1 when it rang, else 0.
local depth = lane_depths(KEYS[2])
if depth[1] + depth[2] + depth[3] > 0 and redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('LPUSH', KEYS[1], ARGV[1])
  return 1
end
return 0

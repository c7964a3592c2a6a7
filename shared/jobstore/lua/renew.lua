-- renew: a worker that still runs a job extends its lease (from its heartbeat).
--
-- The lease is deleted, then written again: under maxmemory Redis refuses a script's
-- memory-growing command only while the script has written nothing, and a lease must be
-- renewed when Redis is full (or a redelivered message would run the job twice).
--
-- KEYS[1]      the running set (sorted set: job id -> when its lease ends)
-- KEYS[1 + i]  job i's record
-- ARGV[1]      the run's token: only a job still leased to this run is renewed
-- ARGV[2]      lease length in seconds, from now (Redis' clock)
-- ARGV[2 + i]  job i's id
--
-- Returns how many leases it renewed.
local t = redis.call('TIME')
local lease = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[2])
local renewed = 0
for i = 2, #KEYS do
  local f = redis.call('HMGET', KEYS[i], 'status', 'run')
  if f[1] == 'running' and f[2] == ARGV[1] then
    redis.call('HDEL', KEYS[i], 'lease_until')
    redis.call('HSET', KEYS[i], 'lease_until', string.format('%.6f', lease))
    redis.call('ZADD', KEYS[1], lease, ARGV[1 + i])
    renewed = renewed + 1
  end
end
return renewed

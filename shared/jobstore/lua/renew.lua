-- renew: a worker that still runs a job extends its lease (from its heartbeat).
--
-- The lease is deleted, then written again: under maxmemory Redis refuses a script's
-- memory-growing command only while the script has written nothing, and a lease must be
-- renewed when Redis is full (or a redelivered message would run the job twice).
--
-- KEYS[i]  job i's record
-- ARGV[1]  the running set (sorted set: job id -> when its lease ends)
-- ARGV[2]  the job key prefix (KEYS[i] = prefix .. id)
-- ARGV[3]  the run's token: only a job still leased to this run is renewed
-- ARGV[4]  lease length in seconds, from now (Redis' clock)
--
-- Returns how many leases it renewed.
local t = redis.call('TIME')
local lease = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[4])
local renewed = 0
for _, key in ipairs(KEYS) do
  local f = redis.call('HMGET', key, 'status', 'run')
  if f[1] == 'running' and f[2] == ARGV[3] then
    redis.call('HDEL', key, 'lease_until')
    redis.call('HSET', key, 'lease_until', string.format('%.6f', lease))
    redis.call('ZADD', ARGV[1], lease, string.sub(key, #ARGV[2] + 1))
    renewed = renewed + 1
  end
end
return renewed

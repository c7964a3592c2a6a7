-- overdue: the running jobs whose lease ended at least ARGV[1] seconds ago by Redis' clock,
-- oldest first: sweep_lost.lua's candidates (its caller reads their records' routing fields
-- in between; the sweep checks each again).
--
-- KEYS[1]  the running set (sorted set: job id -> when its lease ends)
-- ARGV[1]  grace in seconds after a lease ends
-- ARGV[2]  most ids to return
--
-- Returns the ids.
local cutoff = tonumber(redis.call('TIME')[1]) - tonumber(ARGV[1])
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[2]))

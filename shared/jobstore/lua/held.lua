-- held: how many records an owner holds, and when the next one expires (by Redis' clock);
-- read only. The batch routes check a whole batch fits the budget before creating any job.
--
-- KEYS[1]  the owner's active jobs and held records (sorted set; see _held.lua)
-- ARGV[1]  seconds an unfinished record lives (its active entries older than that expired)
-- ARGV[2]  seconds a finished record is kept
--
-- Returns {records held, seconds until one of them expires}.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
return {held_count(KEYS[1], now, tonumber(ARGV[1])), held_frees_in(KEYS[1], now, tonumber(ARGV[2]))}

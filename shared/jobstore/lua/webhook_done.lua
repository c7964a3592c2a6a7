-- webhook_done: an attempt let through by webhook_gate.lua has ended: free its place, and
-- count its outcome in its receiver's circuit breaker. A receiver that answered (2xx, 410,
-- another 4xx) closes the breaker; one that failed (no answer in time, 429, 5xx) counts a
-- failure in a row, and the `failures`-th opens it for `cooldown` seconds (again after a
-- failed probe). The count is forgotten `window` seconds after the last failure.
--
-- KEYS[1]  the owner's attempts under way (sorted set: token -> when its lease ends)
-- KEYS[2]  the receiver's breaker (hash: failures, open_until)
-- ARGV[1]  JSON:
--   token     the attempt's token
--   failed    whether the receiver failed
--   failures  WEBHOOK_BREAKER_FAILURES
--   cooldown  WEBHOOK_BREAKER_SECONDS
--   window    seconds the failure count is kept after the last failure
--
-- Returns the failures in a row after this attempt (0: the breaker is closed).
local a = cjson.decode(ARGV[1])
redis.call('ZREM', KEYS[1], a.token)  -- a deletion first: this goes on when Redis is full
if not a.failed then
  redis.call('DEL', KEYS[2])
  return 0
end
local n = redis.call('HINCRBY', KEYS[2], 'failures', 1)
if n >= a.failures then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[2], 'open_until', tostring(tonumber(t[1]) + tonumber(t[2]) / 1e6 + a.cooldown))
end
redis.call('EXPIRE', KEYS[2], math.ceil(a.window))
return n

-- webhook_gate: may a delivery attempt start now? Two bounds, so that one key's receiver
-- that hangs or fails cannot hold the webhook workers' threads from the other keys:
--
--   its owner's attempts under way  at most `max` at once, across every webhook worker
--                                   (KEYS[1]: one entry per attempt, with a lease so that a
--                                   killed worker's entry ends by itself)
--   its receiver's circuit breaker  open (too many failures in a row, see webhook_done.lua):
--                                   no attempt until the cooldown ends; then one attempt
--                                   probes it (the others wait another cooldown)
--
-- Both keys are small (at most `max` entries; two fields) and expire: O(1) per attempt.
--
-- KEYS[1]  the owner's attempts under way (sorted set: token -> when its lease ends)
-- KEYS[2]  the receiver's breaker, per owner and host:port (hash: failures, open_until)
-- ARGV[1]  JSON:
--   token     this attempt's token (webhook_done.lua removes it)
--   lease     seconds the attempt may hold its place at most (its deadline, and a margin)
--   max       most attempts of the owner under way at once (0: no limit)
--   cooldown  WEBHOOK_BREAKER_SECONDS
--
-- Returns {'go', '0'}, {'busy', seconds until the oldest attempt's lease ends} or {'open',
-- seconds until the breaker's cooldown ends}: the delivery is deferred, not attempted.
local a = cjson.decode(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)  -- a deletion first: this goes on when Redis is full
local open_until = tonumber(redis.call('HGET', KEYS[2], 'open_until'))
if open_until and open_until > now then return {'open', tostring(open_until - now)} end
if a.max > 0 and redis.call('ZCARD', KEYS[1]) >= a.max then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {'busy', tostring(tonumber(oldest[2]) - now)}
end
if open_until then  -- the cooldown ended: this attempt is the probe
  redis.call('HSET', KEYS[2], 'open_until', tostring(now + a.cooldown))
end
redis.call('ZADD', KEYS[1], now + a.lease, a.token)
redis.call('EXPIRE', KEYS[1], math.ceil(a.lease) + 1)
return {'go', '0'}

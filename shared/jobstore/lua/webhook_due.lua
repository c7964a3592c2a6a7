-- webhook_due: move webhook deliveries whose retry is due (see webhook_retry.lua) onto the
-- webhook queue. Every webhook worker calls it every second; being atomic, it moves each
-- delivery once.
--
-- KEYS[1]  the retry schedule (sorted set: task message -> when it is due, Unix seconds)
-- KEYS[2]  the webhook queue (list)
-- ARGV[1]  most deliveries to move in this call
--
-- Returns how many it moved.
local now = redis.call('TIME')
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', tonumber(now[1]) + tonumber(now[2]) / 1e6,
                      'LIMIT', 0, tonumber(ARGV[1]))
if #due > 0 then
  redis.call('LPUSH', KEYS[2], unpack(due))
  redis.call('ZREM', KEYS[1], unpack(due))
end
return #due

-- webhook_due: move webhook deliveries whose retry is due (see webhook_retry.lua) onto the
-- webhook queue, in its low lane. Every webhook worker calls it every second; being atomic,
-- it moves each delivery once.
--
-- KEYS[1]     the retry schedule (sorted set: task message -> when it is due, Unix seconds)
-- KEYS[2..5]  the webhook queue's four keys, its low lane's (see _webhooks.lua)
-- ARGV[1]     most deliveries to move in this call
-- ARGV[2]     the doorbell (shared/broker/fair.py)
--
-- Returns how many it moved.
local now = redis.call('TIME')
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', tonumber(now[1]) + tonumber(now[2]) / 1e6,
                      'LIMIT', 0, tonumber(ARGV[1]))
if #due > 0 then
  redis.call('ZREM', KEYS[1], unpack(due))  -- a deletion first: this goes on when Redis is full
  for _, message in ipairs(due) do webhook_push(2, message, ARGV[2], 'low') end
end
return #due

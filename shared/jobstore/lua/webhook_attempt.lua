-- webhook_attempt: count one more delivery attempt of a job's webhook and store its outcome.
-- Atomic, as deliveries of one job's events run concurrently; never brings back a record
-- that expired.
--
-- KEYS[1]  the job's record
-- ARGV[1]  the webhook state after the attempt (JSON; its attempt count is replaced)
-- ARGV[2]  '1' to count an attempt, '0' to only store the state (an attempt counted already
--          that turns out to be the last: no retry may be scheduled)
--
-- Returns the attempt count, or -1 when the record is gone.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local state = cjson.decode(ARGV[1])
state['attempts'] = redis.call('HINCRBY', KEYS[1], 'webhook_attempts', tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'webhook', cjson.encode(state))
return state['attempts']

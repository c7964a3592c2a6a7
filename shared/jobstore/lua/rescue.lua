-- rescue: find jobs whose message Redis lost in delivery.
--
-- kombu's Redis transport pops a message (BRPOP) and records it as unacknowledged in a
-- second call: a Redis stop between the two loses the message, though the job is still
-- queued. This finds every job queued since before the cutoff whose message was popped
-- already and is not unacknowledged (its record keeps the message's delivery tag until the
-- job starts); the caller builds a new message for each and puts it back (requeue.lua).
--
-- "Popped already" costs O(1), not a scan of the queue: messages are pushed at the head and
-- popped from the tail, so a job created before the oldest message still waiting (the
-- tail's) was popped. Re-pushed messages (requeue.lua, kombu's restores) break that order
-- only towards a later rescue or a duplicate message, both harmless: start.lua runs a job
-- once.
--
-- KEYS[1]  the queue's queued set (sorted set: job id -> when to look at it again)
-- KEYS[2]  the Celery queue (list)
-- KEYS[3]  kombu's unacknowledged messages (hash: delivery tag -> message)
-- ARGV[1]  cutoff: look at jobs whose score is at most this
-- ARGV[2]  now: the next look at a job still queued is one visibility timeout later
-- ARGV[3]  most jobs to look at in this call
-- ARGV[4]  the job key prefix
--
-- Returns {job id, model name, model version, created_at} of each job to put back.
local tail = redis.call('LINDEX', KEYS[2], -1)
local oldest_waiting = math.huge  -- an empty queue: every job's message was popped
if tail then
  local created = redis.call('HGET', ARGV[4] .. cjson.decode(tail)['headers']['id'], 'created_at')
  oldest_waiting = tonumber(created) or -math.huge  -- its record is gone: cannot tell, wait
end
local lost = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))) do
  local f = redis.call('HMGET', ARGV[4] .. id, 'status', 'tag', 'created_at', 'model_name', 'model_version')
  if f[1] ~= 'queued' or not f[2] then
    redis.call('ZREM', KEYS[1], id)
  else
    if tonumber(f[3]) < oldest_waiting and redis.call('HEXISTS', KEYS[3], f[2]) == 0 then
      lost[#lost + 1] = {id, f[4], f[5], f[3]}
    end
    redis.call('ZADD', KEYS[1], ARGV[2], id)
  end
end
return lost

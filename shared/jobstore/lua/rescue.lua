-- rescue: put back the message of jobs that Redis lost in delivery.
--
-- kombu's Redis transport pops a message (BRPOP) and records it as unacknowledged in a
-- second call: a Redis stop between the two loses the message, though the job is still
-- queued. This puts back the kept message of every job queued since before the cutoff that
-- was popped already and is not unacknowledged.
--
-- "Popped already" costs O(1), not a scan of the queue: messages are pushed at the head and
-- popped from the tail, so a job created before the oldest message still waiting (the
-- tail's) was popped. Re-pushed messages (this rescue, kombu's restores) break that order
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
-- Returns how many messages it put back.
local tail = redis.call('LINDEX', KEYS[2], -1)
local oldest_waiting = math.huge  -- an empty queue: every job's message was popped
if tail then
  local created = redis.call('HGET', ARGV[4] .. cjson.decode(tail)['headers']['id'], 'created_at')
  oldest_waiting = tonumber(created) or -math.huge  -- its record is gone: cannot tell, wait
end
local pushed = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))) do
  local f = redis.call('HMGET', ARGV[4] .. id, 'status', 'message', 'created_at')
  if f[1] ~= 'queued' or not f[2] then
    redis.call('ZREM', KEYS[1], id)
  else
    local tag = cjson.decode(f[2])['properties']['delivery_tag']
    if tonumber(f[3]) < oldest_waiting and redis.call('HEXISTS', KEYS[3], tag) == 0 then
      redis.call('LPUSH', KEYS[2], f[2])
      pushed = pushed + 1
    end
    redis.call('ZADD', KEYS[1], ARGV[2], id)
  end
end
return pushed

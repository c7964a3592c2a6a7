-- requeue: put back the messages of jobs that Redis lost in delivery (found by rescue.lua),
-- each only while its job is still queued. The record takes the new message's delivery tag.
--
-- KEYS[1]        the Celery queue (list)
-- KEYS[1 + i]    job i's record
-- ARGV[2i - 1]   job i's new message's delivery tag
-- ARGV[2i]       job i's new message
--
-- Returns how many messages it put back.
local pushed = 0
for i = 2, #KEYS do
  if redis.call('HGET', KEYS[i], 'status') == 'queued' then
    redis.call('HSET', KEYS[i], 'tag', ARGV[2 * (i - 1) - 1])
    redis.call('LPUSH', KEYS[1], ARGV[2 * (i - 1)])
    pushed = pushed + 1
  end
end
return pushed

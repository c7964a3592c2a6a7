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
-- The caller read the queued set's entries up to the cutoff and the queue's tail first, and
-- passes their records; an entry or tail that moved meanwhile is skipped (looked at again
-- by a later call).
--
-- KEYS[1]      the queue's queued set (sorted set: job id -> when to look at it again)
-- KEYS[2]      the Celery queue (list)
-- KEYS[3]      kombu's unacknowledged messages (hash: delivery tag -> message)
-- KEYS[4]      the record of the job the tail's message names (Keyspace.absent: no tail)
-- KEYS[4 + i]  the record of job i
-- ARGV[1]      JSON:
--   cutoff     look at jobs whose score is at most this
--   now        the next look at a job still queued is one visibility timeout later
--   tail       the id of the job the tail's message names, as the caller read it ('': none)
--   ids        the job ids, in KEYS' order
--
-- Returns {job id, model name, model version, created_at} of each job to put back.
local a = cjson.decode(ARGV[1])
local tail = redis.call('LINDEX', KEYS[2], -1)
local oldest_waiting = math.huge  -- an empty queue: every job's message was popped
if tail then
  local created = nil
  if cjson.decode(tail)['headers']['id'] == a.tail then created = redis.call('HGET', KEYS[4], 'created_at') end
  oldest_waiting = tonumber(created) or -math.huge  -- its record is gone, or the tail moved: cannot tell, wait
end
local lost = {}
for i, id in ipairs(a.ids) do
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= a.cutoff then
    local f = redis.call('HMGET', KEYS[4 + i], 'status', 'tag', 'created_at', 'model_name', 'model_version')
    if f[1] ~= 'queued' or not f[2] then
      redis.call('ZREM', KEYS[1], id)
    else
      if tonumber(f[3]) < oldest_waiting and redis.call('HEXISTS', KEYS[3], f[2]) == 0 then
        lost[#lost + 1] = {id, f[4], f[5], f[3]}
      end
      redis.call('ZADD', KEYS[1], a.now, id)
    end
  end
end
return lost

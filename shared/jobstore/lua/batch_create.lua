-- batch_create: record a batch of jobs, in order; with a webhook, arm its one delivery.
--
-- The delivery is armed in a hash (KEYS[2]: 'left' = the batch's jobs not yet ended, the
-- task message). Each job still unfinished gets a 'batch' field naming that hash and a
-- 'batch_queue' field naming the webhook queue (callers read both to pass them as keys; see
-- _routes.lua); every script that ends a job (finish, cancel, start's expired and lost, the
-- lost-job sweep) counts it down there (see _webhooks.lua), and the one that brings it to zero
-- queues the message: exactly one delivery, however the jobs end. Jobs ended already (a
-- cached result, or one quick enough) are not counted.
--
-- KEYS[1]      the batch's record (string: JSON)
-- KEYS[2]      the batch's webhook hash (Keyspace.absent without a webhook)
-- KEYS[3]      the webhook queue (list; Keyspace.absent without a webhook)
-- KEYS[4]      the owner's held records (sorted set, see _held.lua; Keyspace.absent
--              without an owner): the batch's record counts against its budget (the API
--              checked the budget had room for it and its jobs before creating them)
-- KEYS[4 + i]  the record of the batch's job i
-- ARGV[1]      the record (JSON)
-- ARGV[2]      seconds the record (and the hash) live
-- ARGV[3]      the delivery's task message ('' without a webhook)
-- ARGV[4]      the record's member in KEYS[4] ('' without an owner)
--
-- Returns 1 when the delivery was queued at once (every job had ended), else 0.
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if ARGV[4] ~= '' then
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[4], -(tonumber(t[1]) + tonumber(ARGV[2])), ARGV[4])
end
if ARGV[3] == '' then return 0 end
local left = 0
for i = 5, #KEYS do
  local status = redis.call('HGET', KEYS[i], 'status')
  if status == 'queued' or status == 'running' then
    redis.call('HSET', KEYS[i], 'batch', KEYS[2], 'batch_queue', KEYS[3])
    left = left + 1
  end
end
if left == 0 then
  redis.call('LPUSH', KEYS[3], ARGV[3])
  return 1
end
redis.call('HSET', KEYS[2], 'left', left, 'message', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 0

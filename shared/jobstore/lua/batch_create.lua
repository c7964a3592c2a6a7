-- batch_create: record a batch of jobs, in order; with a webhook, arm its one delivery.
--
-- The delivery is armed in a hash (KEYS[2]: 'left' = the batch's jobs not yet ended, the
-- webhook queue, the task message). Each job still unfinished gets a 'batch' field naming
-- that hash; every script that ends a job (finish, cancel, start's expired and lost, the
-- lost-job sweep) counts it down there (see _batch.lua), and the one that brings it to
-- zero queues the message: exactly one delivery, however the jobs end. Jobs ended already
-- (a cached result, or one quick enough) are not counted.
--
-- KEYS[1]  the batch's record (string: JSON)
-- KEYS[2]  the batch's webhook hash, or '' for a batch without a webhook
-- ARGV[1]  the record (JSON)
-- ARGV[2]  seconds the record (and the hash) live
-- ARGV[3]  the job key prefix
-- ARGV[4]  the webhook queue ('' without a webhook)
-- ARGV[5]  the delivery's task message ('' without a webhook)
-- ARGV[6..] the batch's job ids
--
-- Returns 1 when the delivery was queued at once (every job had ended), else 0.
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if KEYS[2] == '' then return 0 end
local left = 0
for i = 6, #ARGV do
  local key = ARGV[3] .. ARGV[i]
  local status = redis.call('HGET', key, 'status')
  if status == 'queued' or status == 'running' then
    redis.call('HSET', key, 'batch', KEYS[2])
    left = left + 1
  end
end
if left == 0 then
  redis.call('LPUSH', ARGV[4], ARGV[5])
  return 1
end
redis.call('HSET', KEYS[2], 'left', left, 'queue', ARGV[4], 'message', ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 0

-- (prepended to the scripts that end jobs; see batch_create.lua)
-- A job of a batch with a webhook has ended: count it down; the batch's last job to end
-- queues the batch's delivery. `hook`: the batch's webhook hash, `queue`: the webhook queue
-- (the job's keys from _routes.lua; Keyspace.absent, which never exists, for most jobs).
local function batch_ended(hook, queue)
  if redis.call('EXISTS', hook) == 1 and redis.call('HINCRBY', hook, 'left', -1) == 0 then
    redis.call('LPUSH', queue, redis.call('HGET', hook, 'message'))
    redis.call('DEL', hook)
  end
end

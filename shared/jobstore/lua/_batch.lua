-- (prepended to the scripts that end jobs; see batch_create.lua)
-- A job of a batch with a webhook has ended: count it down; the batch's last job to end
-- queues the batch's delivery. `hook` is the job's 'batch' field (nil for most jobs).
local function batch_ended(hook)
  if hook and redis.call('EXISTS', hook) == 1 and redis.call('HINCRBY', hook, 'left', -1) == 0 then
    local target = redis.call('HMGET', hook, 'queue', 'message')
    redis.call('LPUSH', target[1], target[2])
    redis.call('DEL', hook)
  end
end

-- (prepended to the scripts that end or start jobs) Webhook deliveries are queued by the
-- same script as the status change they report: no crash between the two can lose one.
--
-- The webhook queue is a fair queue of one lane and one owner (shared/broker/envelopes.py),
-- so a worker's BRPOP takes only its doorbell and no delivery is out of Redis unrecorded.
-- A first attempt waits in the normal lane; retries and deferred attempts (webhook_due.lua)
-- in the low one, so that a key's pile of deferred deliveries is not ahead of the others'
-- first attempts (the take serves the normal lane first, 15 picks in 16).
-- `first`: the index in KEYS of its four keys (OpsBase.webhook_keys): the owner's list in
-- `lane`, the lane's ring, the queue's state, its Celery list. Pushed as restore.lua does.
local function webhook_push(first, message, doorbell, lane)
  if redis.call('LPUSH', KEYS[first], message) == 1 then redis.call('RPUSH', KEYS[first + 1], '-') end
  redis.call('HINCRBY', KEYS[first + 2], 'depth:' .. lane, 1)
  if redis.call('LLEN', KEYS[first + 3]) == 0 then redis.call('LPUSH', KEYS[first + 3], doorbell) end
end

-- Queue job `id`'s `event` ('completed' or 'running') delivery when its record has a webhook
-- that asks for it. `hooks`: the JSON input's {completed, running (message templates naming
-- the job '@@job@@'), doorbell}, or false (a store without a webhook queue: nothing queued).
local function webhook_event(record, id, event, hooks, first, known)
  if not hooks then return end
  -- `known`: {webhook_url, webhook_events} as the caller read them in this script (one HMGET less)
  local f = known or redis.call('HMGET', record, 'webhook_url', 'webhook_events')
  if not f[1] or f[1] == '' then return end
  if not string.find(',' .. (f[2] or '') .. ',', ',' .. event .. ',', 1, true) then return end
  local message = string.gsub(hooks[event], '@@job@@', (string.gsub(id, '%%', '%%%%')))
  webhook_push(first, message, hooks.doorbell, 'normal')
end

-- A job of a batch with a webhook has ended: count it down; the batch's last job to end
-- queues the batch's delivery (see batch_create.lua). `hook`: the batch's webhook hash,
-- `queue`: the webhook queue (the job's keys from _routes.lua; Keyspace.absent, which never
-- exists, for most jobs); with `hooks`, pushed as webhook_push does at `first`.
local function batch_ended(hook, queue, hooks, first)
  if redis.call('EXISTS', hook) == 1 and redis.call('HINCRBY', hook, 'left', -1) == 0 then
    local message = redis.call('HGET', hook, 'message')
    if hooks then webhook_push(first, message, hooks.doorbell, 'normal') else redis.call('LPUSH', queue, message) end
    redis.call('DEL', hook)
  end
end

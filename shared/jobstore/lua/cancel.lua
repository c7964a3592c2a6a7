-- cancel: queued -> cancelled, by Redis' clock. A job in any other state is left as it is.
-- The cancelled record is compacted as finish.lua does; the first write is that deletion,
-- so a cancel (which frees memory) goes through when Redis is full (see finish.lua).
--
-- KEYS[1..6]  the job's keys (see _routes.lua)
-- KEYS[7..10] the webhook queue's four keys (see _webhooks.lua; Keyspace.absent without hooks)
-- ARGV[1]     JSON:
--   channel   the channel that finished job ids are published on
--   id        the job id
--   keep      seconds a finished job's record is kept
--   caller    the caller's key id: another owner's job is left alone and reported as gone
--             ('' for a caller who may cancel any job)
--   fields    record fields to return
--   seen      {the job's routing fields as the caller read them} (see _routes.lua)
--   hooks     webhook templates and doorbell (see _webhooks.lua), or false: none queued
--
-- Returns 'stale' (nothing written) when the routing fields changed, else {status before
-- the call ('' when the record is gone), the record's `fields` after the call}. A cancelled
-- job that asked for its `completed` webhook has its delivery queued here.
local a = cjson.decode(ARGV[1])
if routes_changed(1, a.seen) then return 'stale' end
local k = job_keys(1, 1)
local status, owner = unpack(redis.call('HMGET', k.record, 'status', 'owner'))
if a.caller ~= '' and owner ~= a.caller then return {'', {}} end
if status == 'queued' then
  redis.call('HDEL', k.record, 'input', 'tag', 'queue', 'cache_key')
  local t = redis.call('TIME')
  redis.call('HSET', k.record, 'status', 'cancelled', 'finished_at', t[1] .. '.' .. string.format('%06d', t[2]))
  redis.call('EXPIRE', k.record, a.keep)
  redis.call('ZREM', k.queued, a.id)
  held_until(k.active, a.id, tonumber(t[1]) + a.keep)  -- held as long as its record
  batch_ended(k.hook, k.hook_queue, a.hooks, 7)
  webhook_event(k.record, a.id, 'completed', a.hooks, 7)
  redis.call('PUBLISH', a.channel, a.id)
end
return {status or '', redis.call('HMGET', k.record, unpack(a.fields))}

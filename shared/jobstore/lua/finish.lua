-- finish: record the outcomes of one run's jobs, by Redis' clock.
--
--   running under this run's token -> succeeded | failed
--   already finished by this run   -> reported again (a retried call whose reply was lost
--                                     still names every job it finished)
--   anything else                  -> left alone: cancelled, gone, or taken over by a later
--                                     run after this run's lease ended (fencing: a late
--                                     finish never overwrites the new run)
--
-- A finished record is compacted: what only running the job needed (its input, the
-- bookkeeping of its message and lease) is dropped, and it is kept `keep` seconds from
-- now. The first write is that deletion: under maxmemory Redis refuses a script's
-- memory-growing command only while the script has written nothing, and finishing (which
-- frees memory) must go on when Redis is full.
--
-- KEYS[1]        the running set (sorted set: job id -> when its lease ends)
-- KEYS[2..]      six keys per job (see _routes.lua)
-- then          the webhook queue's four keys (see _webhooks.lua; Keyspace.absent without hooks)
-- ARGV[1]        JSON:
--   channel      the channel that finished job ids are published on
--   cache_ttl    result cache TTL in seconds (0: cache nothing)
--   run          the run's token (see start.lua)
--   keep         seconds a finished job's record is kept
--   ids          the job ids, in KEYS' order
--   seen         per job, its routing fields as the caller read them (see _routes.lua)
--   statuses     per job, its new status: 'succeeded' or 'failed'
--   values       per job, its result (when succeeded) or error (when failed), as JSON
--   hooks        webhook templates and doorbell (see _webhooks.lua), or false: none queued
--
-- Returns 'stale' (nothing written) when routing fields changed, else the ids this run
-- finished. A succeeded job with a cache key fills the result cache; a job that asked for
-- its `completed` webhook has its delivery queued here, with its new status.
local a = cjson.decode(ARGV[1])
local rows = routed_fields(2, a.seen, {'status', 'run', 'cache_key', 'webhook_url', 'webhook_events'})
if not rows then return 'stale' end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local stamp = string.format('%.6f', now)
local done, published = {}, {}
local hk = 2 + 6 * #a.ids  -- the webhook queue's keys
for i, id in ipairs(a.ids) do
  local k = job_keys(2, i)
  local status, value = a.statuses[i], a.values[i]
  local f = rows[i]
  if f[2] == a.run and f[1] == 'running' then
    redis.call('HDEL', k.record, 'input', 'queue', 'cache_key', 'lease_until', 'runs')
    local field = status == 'succeeded' and 'result' or 'error'
    redis.call('HSET', k.record, 'status', status, field, value, 'finished_at', stamp)
    redis.call('EXPIRE', k.record, a.keep)
    redis.call('ZREM', KEYS[1], id)
    held_until(k.active, id, now + a.keep)  -- no longer active; held as long as its record
    if a.seen[i][3] ~= '' then batch_ended(k.hook, k.hook_queue, a.hooks, hk) end  -- in a batch
    webhook_event(k.record, id, 'completed', a.hooks, hk, {f[4], f[5]})
    done[#done + 1] = id
    published[#published + 1] = id
    if f[3] and status == 'succeeded' and a.cache_ttl > 0 then
      redis.call('SET', k.cache, value, 'EX', a.cache_ttl)
    end
  elseif f[2] == a.run and (f[1] == 'succeeded' or f[1] == 'failed') then
    done[#done + 1] = id
  end
end
if #published > 0 then redis.call('PUBLISH', a.channel, table.concat(published, ',')) end
return done

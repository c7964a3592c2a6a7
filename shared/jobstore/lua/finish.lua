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
-- bookkeeping of its message and lease) is dropped, and it is kept ARGV[6] seconds from
-- now. The first write is that deletion: under maxmemory Redis refuses a script's
-- memory-growing command only while the script has written nothing, and finishing (which
-- frees memory) must go on when Redis is full.
--
-- KEYS[i]              job i's record
-- ARGV[1]              the channel that finished job ids are published on
-- ARGV[2]              result cache TTL in seconds (0: cache nothing)
-- ARGV[3]              the job key prefix (KEYS[i] = prefix .. id)
-- ARGV[4]              the running set (sorted set: job id -> when its lease ends)
-- ARGV[5]              the run's token (see start.lua)
-- ARGV[6]              seconds a finished job's record is kept
-- ARGV[7]              the owners' active sets' prefix (named by the record's 'owner')
-- ARGV[7 + i]          job i's new status: 'succeeded' or 'failed'
-- ARGV[7 + #KEYS + i]  job i's result (when succeeded) or error (when failed), as JSON
--
-- Returns the ids this run finished. A succeeded job with a cache key fills the result cache.
local t = redis.call('TIME')
local stamp = string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000)
local jobs, prefix_length = #KEYS, #ARGV[3]
local done, published = {}, {}
for i, key in ipairs(KEYS) do
  local id = string.sub(key, prefix_length + 1)
  local status, value = ARGV[7 + i], ARGV[7 + jobs + i]
  local f = redis.call('HMGET', key, 'status', 'run', 'cache_key', 'owner', 'batch')
  if f[2] == ARGV[5] and f[1] == 'running' then
    redis.call('HDEL', key, 'input', 'queue', 'cache_key', 'lease_until', 'runs')
    local field = status == 'succeeded' and 'result' or 'error'
    redis.call('HSET', key, 'status', status, field, value, 'finished_at', stamp)
    redis.call('EXPIRE', key, ARGV[6])
    redis.call('ZREM', ARGV[4], id)
    if f[4] then redis.call('ZREM', ARGV[7] .. f[4], id) end
    batch_ended(f[5])
    done[#done + 1] = id
    published[#published + 1] = id
    if f[3] and status == 'succeeded' and tonumber(ARGV[2]) > 0 then
      redis.call('SET', f[3], value, 'EX', ARGV[2])
    end
  elseif f[2] == ARGV[5] and (f[1] == 'succeeded' or f[1] == 'failed') then
    done[#done + 1] = id
  end
end
if #published > 0 then redis.call('PUBLISH', ARGV[1], table.concat(published, ',')) end
return done

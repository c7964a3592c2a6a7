-- finish: record the outcomes of running jobs. running -> succeeded | failed; a job in any
-- other state (cancelled, finished by an earlier delivery, gone) is left as it is.
--
-- KEYS[i]            job i's record
-- ARGV[1]            finished_at (Unix seconds)
-- ARGV[2]            the channel that finished job ids are published on
-- ARGV[3]            result cache TTL in seconds (0: cache nothing)
-- ARGV[4]            the job key prefix (KEYS[i] = prefix .. id)
-- ARGV[4 + i]        job i's new status: 'succeeded' or 'failed'
-- ARGV[4 + #KEYS + i] job i's result (when succeeded) or error (when failed), as JSON
--
-- Returns the ids it finished. A succeeded job with a cache key fills the result cache.
local jobs, prefix_length = #KEYS, #ARGV[4]
local done = {}
for i, key in ipairs(KEYS) do
  local status, value = ARGV[4 + i], ARGV[4 + jobs + i]
  if redis.call('HGET', key, 'status') == 'running' then
    local field = status == 'succeeded' and 'result' or 'error'
    redis.call('HSET', key, 'status', status, field, value, 'finished_at', ARGV[1])
    done[#done + 1] = string.sub(key, prefix_length + 1)
    local cache_key = redis.call('HGET', key, 'cache_key')
    if cache_key and status == 'succeeded' and tonumber(ARGV[3]) > 0 then
      redis.call('SET', cache_key, value, 'EX', ARGV[3])
    end
  end
end
if #done > 0 then redis.call('PUBLISH', ARGV[2], table.concat(done, ',')) end
return done

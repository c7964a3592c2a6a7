-- (prepended to the scripts that take jobs' keys named by their records; see
-- shared/jobstore/ops/base.py) Job i's six keys are KEYS[first + 6(i - 1)] onwards: its
-- record, its queue's queued set, its owner's active set, its batch's webhook hash, that
-- webhook's queue, its result cache entry (Keyspace.absent, never written, where it has
-- none). The caller named them from the record's routing fields (ROUTES, as
-- records.ROUTE_FIELDS), read just before.
local ROUTES = {'queue', 'owner', 'batch', 'batch_queue', 'cache_key'}

local function job_keys(first, i)
  local k = first + 6 * (i - 1)
  return {record = KEYS[k], queued = KEYS[k + 1], active = KEYS[k + 2], hook = KEYS[k + 3],
          hook_queue = KEYS[k + 4], cache = KEYS[k + 5]}
end

-- Whether a job's routing fields changed since the caller read them (`seen`: per job, the
-- values in ROUTES order, '' for none): then the script writes nothing and replies 'stale',
-- and the caller reads them again. They change at most twice in a record's life
-- (batch_create adds the batch; an end drops queue and cache key), so this rarely repeats.
local function routes_changed(first, seen)
  for i, values in ipairs(seen) do
    local now = redis.call('HMGET', KEYS[first + 6 * (i - 1)], unpack(ROUTES))
    for j = 1, #ROUTES do
      if (now[j] or '') ~= values[j] then return true end
    end
  end
  return false
end

-- routes_changed's check and the read of each job's `names` in one HMGET per job: nil when
-- a routing field changed (write nothing, reply 'stale'), else per job the values of `names`.
local function routed_fields(first, seen, names)
  local rows, fields = {}, {}
  for j = 1, #ROUTES do fields[j] = ROUTES[j] end
  for j = 1, #names do fields[#ROUTES + j] = names[j] end  -- (only a call's last unpack expands)
  for i, values in ipairs(seen) do
    local f = redis.call('HMGET', KEYS[first + 6 * (i - 1)], unpack(fields))
    for j = 1, #ROUTES do
      if (f[j] or '') ~= values[j] then return nil end
    end
    local row = {}
    for j = 1, #names do row[j] = f[#ROUTES + j] end
    rows[i] = row
  end
  return rows
end

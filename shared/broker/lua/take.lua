-- take: a burst for one worker from a fair queue, every message recorded as kombu records a
-- delivered one, in one script (nothing is ever out of a list without its record).
--
-- What BRPOP took (ARGV[3]) is the queue's doorbell, or a message put in the Celery list
-- itself (by a kombu without our patch): that message comes first, then whatever else is in
-- the Celery list, then the lanes. Each further message is one pick:
--   lane   slot n % 16 of the queue's pick counter: slot 0 tries low, normal, high; slot 8
--          normal, high, low; every other slot high, normal, low. So the highest lane with
--          jobs waiting gets 14 picks in 16, and a lower lane with jobs waiting still gets at
--          least 1 in 16 (README: Fair share and priority lanes).
--   owner  the head of the lane's ring. It gives one message per pick until it has given
--          its weight's worth (its credit) or has none left, then goes to the ring's tail
--          (or leaves it): weighted round robin, so an owner with one job waits behind at
--          most one turn of every other owner with jobs in the lane.
-- Each pick costs a few O(1) commands: a burst is O(burst), whatever the backlog or the
-- number of owners.
--
-- KEYS: kombu's unacked index, kombu's unacked hash, the Celery list (the doorbell), the
--       held set, the fair state, the weights, the high, normal and low rings.
-- ARGV: now, room (messages the worker may take in all), the message BRPOP took, the prefix
--       of the owners' lists (Keyspace.fair_prefix: lane:owner follows), the doorbell.
-- Returns the messages taken, oldest pick first.
redis.call('ZREM', KEYS[1], '')  -- a deletion first (a no-op): see shared/broker/patch.py
local room, prefix, doorbell = tonumber(ARGV[2]), ARGV[4], ARGV[5]
local taken = {}
if ARGV[3] ~= doorbell then taken[1] = ARGV[3] end
while #taken < room do
  local message = redis.call('RPOP', KEYS[3])
  if not message then break end
  if message ~= doorbell then taken[#taken + 1] = message end
end
local lanes = {'high', 'normal', 'low'}
local order = {[0] = {3, 2, 1}, [8] = {2, 1, 3}}
local s = redis.call('HMGET', KEYS[5], 'n', 'depth:high', 'depth:normal', 'depth:low',
  'credit:high', 'credit:normal', 'credit:low')
local n = tonumber(s[1]) or 0
local depth, credit = {}, {}
for l = 1, 3 do
  depth[l] = tonumber(s[1 + l]) or 0
  credit[l] = tonumber(s[4 + l])
  -- A ring with owners but no count (the state hash lost alone): counted again, so the
  -- lane is served; its count heals as picks find the lists empty.
  if depth[l] <= 0 and redis.call('LLEN', KEYS[6 + l]) > 0 then depth[l] = redis.call('LLEN', KEYS[6 + l]) end
end
-- Read once per call, not per message: each lane's ring head (until it moves), its length
-- (once it matters), each owner's weight. A ring of one owner never needs rotating.
local heads, ring_lengths, weights = {}, {}, {}
local visits = 2 * room + 8  -- a visit that finds nothing heals the state: never loop on those
while #taken < room and visits > 0 do
  visits = visits - 1
  local lane = nil
  for _, l in ipairs(order[n % 16] or {1, 2, 3}) do
    if depth[l] > 0 then lane = l break end
  end
  if not lane then break end
  local ring = KEYS[6 + lane]
  local owner = heads[lane]
  if not owner then
    owner = redis.call('LINDEX', ring, 0)
    heads[lane] = owner
  end
  if not owner then
    depth[lane] = 0
  else
    local list = prefix .. lanes[lane] .. ':' .. owner
    local message = redis.call('RPOP', list)
    if message then
      n = n + 1
      depth[lane] = depth[lane] - 1
      taken[#taken + 1] = message
      if not weights[owner] then weights[owner] = tonumber(redis.call('HGET', KEYS[6], owner)) or 1 end
      credit[lane] = (credit[lane] or weights[owner]) - 1
    end
    if not message or redis.call('LLEN', list) == 0 then
      redis.call('LPOP', ring)
      heads[lane], credit[lane] = nil, nil
      if ring_lengths[lane] then ring_lengths[lane] = ring_lengths[lane] - 1 end
    elseif credit[lane] <= 0 then
      ring_lengths[lane] = ring_lengths[lane] or redis.call('LLEN', ring)
      if ring_lengths[lane] > 1 then
        redis.call('LMOVE', ring, ring, 'LEFT', 'RIGHT')
        heads[lane] = nil
      end
      credit[lane] = nil
    end
  end
end
local state = {'n', n}
for l = 1, 3 do
  state[#state + 1] = 'depth:' .. lanes[l]
  state[#state + 1] = math.max(depth[l], 0)
  if credit[l] then
    state[#state + 1] = 'credit:' .. lanes[l]
    state[#state + 1] = credit[l]
  else
    redis.call('HDEL', KEYS[5], 'credit:' .. lanes[l])
  end
end
redis.call('HSET', KEYS[5], unpack(state))
for _, message in ipairs(taken) do
  local ok, decoded = pcall(cjson.decode, message)
  local properties = ok and type(decoded) == 'table' and decoded['properties']
  local tag = type(properties) == 'table' and properties['delivery_tag']
  if type(tag) == 'string' then
    local info = properties['delivery_info'] or {}
    redis.call('ZADD', KEYS[1], ARGV[1], tag)
    redis.call('HSET', KEYS[2], tag, '[' .. message .. ',' .. cjson.encode(info['exchange'] or '') .. ','
      .. cjson.encode(info['routing_key'] or '') .. ']')
    redis.call('SADD', KEYS[4], tag)
  end
end
-- More waiting: ring for the next worker (its BRPOP wakes), unless a doorbell is there.
if depth[1] + depth[2] + depth[3] > 0 and redis.call('LLEN', KEYS[3]) == 0 then
  redis.call('LPUSH', KEYS[3], doorbell)
end
return taken

-- (prepended to the scripts that read a fair queue's depth; see shared/broker/fair.py)
-- Jobs waiting in each lane of a fair queue, from its state hash: {high, normal, low}.
local function lane_depths(state)
  local depth = redis.call('HMGET', state, 'depth:high', 'depth:normal', 'depth:low')
  return {tonumber(depth[1]) or 0, tonumber(depth[2]) or 0, tonumber(depth[3]) or 0}
end

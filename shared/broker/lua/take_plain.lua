-- take_plain: kombu's BRPOP took one message of a plain (not fair) queue; record it and take
-- more in the same step.
-- KEYS: the unacked index, the unacked hash, the queue BRPOP took ARGV[3] from.
-- ARGV: now, how many more to take, the message BRPOP took, '1' to record them ('0' for a
--       consumer that does not acknowledge: kombu records nothing for it either).
-- Records ARGV[3] and takes up to ARGV[2] more from the queue's tail (oldest first, as BRPOP
-- would), recording each as kombu does: [message, exchange, routing key], the message's text
-- kept verbatim. A message that is not kombu's JSON is returned unrecorded, as kombu's own
-- path would leave it (its delivery fails in Python, not here half-way).
redis.call('ZREM', KEYS[1], '')  -- a deletion first (a no-op): see shared/broker/patch.py
local taken = {ARGV[3]}
if tonumber(ARGV[2]) > 0 then
  local more = redis.call('RPOP', KEYS[3], ARGV[2])
  if more then
    for _, message in ipairs(more) do taken[#taken + 1] = message end
  end
end
for _, message in ipairs(taken) do
  local ok, decoded = pcall(cjson.decode, message)
  local properties = ok and type(decoded) == 'table' and decoded['properties']
  local tag = type(properties) == 'table' and properties['delivery_tag']
  if type(tag) == 'string' and ARGV[4] == '1' then
    local info = properties['delivery_info'] or {}
    redis.call('ZADD', KEYS[1], ARGV[1], tag)
    redis.call('HSET', KEYS[2], tag, '[' .. message .. ',' .. cjson.encode(info['exchange'] or '') .. ','
      .. cjson.encode(info['routing_key'] or '') .. ']')
  end
end
return taken

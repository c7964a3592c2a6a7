-- workers: the workers whose heartbeat is current, and what each serves (see heartbeat.lua).
--
-- KEYS[1]  live workers (sorted set: worker name -> when its heartbeat lapses)
-- KEYS[2]  what each worker serves (hash: worker name -> JSON)
--
-- Returns {name 1, what it serves, name 2, ...} ('' where it said nothing).
local out = {}
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. redis.call('TIME')[1], '+inf')) do
  out[#out + 1] = name
  out[#out + 1] = redis.call('HGET', KEYS[2], name) or ''
end
return out

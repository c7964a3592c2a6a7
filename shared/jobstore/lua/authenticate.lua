-- authenticate: the record of the API key with this digest, its use stamped (Redis' clock).
--
-- KEYS[1]  the digest entry (string: key id)
-- ARGV[1]  the key record prefix (record = prefix .. id)
-- ARGV[2..] record fields to return, 'id' first
--
-- Returns the fields, or false for an unknown or revoked key (its record is gone).
local id = redis.call('GET', KEYS[1])
if not id then return false end
local key = ARGV[1] .. id
local fields = redis.call('HMGET', key, unpack(ARGV, 2))
if not fields[1] then return false end
-- pcall: a full Redis (maxmemory) must not turn every request into an error.
local t = redis.call('TIME')
redis.pcall('HSET', key, 'last_used_at', string.format('%d.%06d', t[1], t[2]))
return fields

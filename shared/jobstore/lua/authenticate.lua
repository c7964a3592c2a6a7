-- authenticate: the record of the API key with this digest, its use stamped (Redis' clock).
-- The caller read the digest entry first (the record's key is named by its value).
--
-- KEYS[1]  the digest entry (string: key id)
-- KEYS[2]  the record of the key id the caller read there
-- ARGV[1]  that key id: a digest entry gone or changed since is an unknown key
-- ARGV[2..] record fields to return, 'id' first
--
-- Returns the fields, or false for an unknown or revoked key (its record is gone).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
local fields = redis.call('HMGET', KEYS[2], unpack(ARGV, 2))
if not fields[1] then return false end
-- pcall: a full Redis (maxmemory) must not turn every request into an error.
local t = redis.call('TIME')
redis.pcall('HSET', KEYS[2], 'last_used_at', string.format('%d.%06d', t[1], t[2]))
return fields

-- read: the model epoch and the defaults, as of one moment (a process that follows the
-- catalog records the epoch its reading of the defaults belongs to).
--
-- KEYS[1]  the model defaults (hash: model name -> default version)
-- KEYS[2]  the model epoch (a counter)
--
-- Returns {epoch (0 before any change), {name, version, name, version, ...}}.
return {tonumber(redis.call('GET', KEYS[2]) or '0'), redis.call('HGETALL', KEYS[1])}

-- announce: tell every process that MODEL_DIR or a default changed (shared.catalog).
--
-- KEYS[1]  the model epoch (a counter)
-- ARGV[1]  the channel each new epoch is published on
--
-- Returns the new epoch.
local epoch = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], epoch)
return epoch

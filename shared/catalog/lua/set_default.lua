-- set_default: make a version the default of its model, announced, unless a condition on
-- the default now fails. Atomic, so a default set in between by an admin (POST
-- /models/{name}/default) or another training job is never undone.
--
-- KEYS[1]  the model defaults (hash: model name -> default version)
-- KEYS[2]  the model epoch (a counter)
-- ARGV[1]  the channel each new epoch is published on
-- ARGV[2]  the model's name
-- ARGV[3]  the version to make its default
-- ARGV[4]  when: 'always'; 'unset' (only while the model has no default); 'is' (only while
--          its default is ARGV[5])
-- ARGV[5]  the default expected, for 'is'
--
-- Returns the new epoch, or 0 when the condition failed (nothing written or announced).
local current = redis.call('HGET', KEYS[1], ARGV[2])
if (ARGV[4] == 'unset' and current) or (ARGV[4] == 'is' and current ~= ARGV[5]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
local epoch = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[1], epoch)
return epoch

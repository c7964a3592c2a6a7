-- reserve_version: the next version number of a model, for a training job to write, never
-- handed out twice (two training jobs queued for one model write two versions).
--
-- KEYS[1]  the hash of the last version reserved per model (model name -> number)
-- ARGV[1]  the model's name
-- ARGV[2]  the highest numeric version on disk now (0: none): the next one is above both
--
-- Returns the reserved version (a number).
local last = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local floor = tonumber(ARGV[2])
if floor > last then last = floor end
last = last + 1
redis.call('HSET', KEYS[1], ARGV[1], last)
return last

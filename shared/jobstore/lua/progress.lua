-- progress: a training job's progress (one small JSON, overwritten after every epoch),
-- written only by the run that holds the job, so a late write of a run that lost its lease
-- (or of a job that finished or was cancelled) changes nothing. finish.lua keeps the last
-- one on the compacted record: the job says how far it got.
--
-- The field is deleted, then written again: under maxmemory Redis refuses a script's
-- memory-growing command only while the script has written nothing (see renew.lua).
--
-- KEYS[1]  the job's record
-- ARGV[1]  the run's token (see start.lua)
-- ARGV[2]  the progress (JSON of shared.schemas.TrainingProgress)
--
-- Returns 1 when written, 0 when the job is not running under this run.
local f = redis.call('HMGET', KEYS[1], 'status', 'run')
if f[1] ~= 'running' or f[2] ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'progress')
redis.call('HSET', KEYS[1], 'progress', ARGV[2])
return 1

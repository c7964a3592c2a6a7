-- training_slot: take one of the TRAINING_MAX_QUEUED_JOBS slots for a new training job, or
-- refuse, atomically: two admins posting at once cannot both take the last slot. A slot is
-- held from submission until the training worker is done with the job's message (it ran,
-- or was skipped: cancelled, expired, lost too often), so it counts queued and running jobs.
-- A slot whose release was lost (its message lost with Redis) lapses by itself.
--
-- KEYS[1]  the slots (sorted set: training job id -> when its slot lapses, Redis' clock)
-- ARGV[1]  the new training job's id
-- ARGV[2]  how many slots there are (TRAINING_MAX_QUEUED_JOBS)
-- ARGV[3]  seconds a slot is held at most (longer than a job can wait and run)
--
-- Returns 1 when the slot is taken, 0 when all are held. Every step is O(slots): the set
-- never holds more than the cap.
local now = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return 1

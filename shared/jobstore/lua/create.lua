-- create: record a new job and enqueue its message, atomically (or replay an idempotent one).
--
-- KEYS[1]  the job's record (hash)
-- KEYS[2]  the Celery queue (list) the message goes to
-- KEYS[3]  the idempotency key (string), or '' when the request has none
-- KEYS[4]  the listing index (sorted set: job id -> created_at)
-- KEYS[5]  the queued set (sorted set: job id -> when to look for its message again)
-- ARGV[1]  retention in seconds (record, idempotency key, index window)
-- ARGV[2]  the task message, or '' when nothing is to run (a cached result)
-- ARGV[3]  the idempotency key's value: '<job id>|<request fingerprint>'
-- ARGV[4]  created_at (Unix seconds)
-- ARGV[5]  the job id
-- ARGV[6..] the record's fields as name, value pairs
--
-- Returns the idempotency key's existing value when the key was used already (nothing is
-- written), else false. The message is also kept on the record until the job starts, so a
-- message Redis loses in delivery can be put back (see rescue.lua).
if KEYS[3] ~= '' then
  local existing = redis.call('GET', KEYS[3])
  if existing then return existing end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('EXPIRE', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  redis.call('HSET', KEYS[1], 'message', ARGV[2])
  redis.call('ZADD', KEYS[5], ARGV[4], ARGV[5])
end
if KEYS[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[1]) end
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', tonumber(ARGV[4]) - tonumber(ARGV[1]))
return false

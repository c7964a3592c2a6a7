-- create: record a new job and enqueue its message, atomically, by Redis' clock (or replay
-- an idempotent one, or refuse it when the backlog is full).
--
-- KEYS[1]  the job's record (hash)
-- KEYS[2]  the Celery queue (list) the message goes to
-- KEYS[3]  the idempotency key (string; Keyspace.absent when the request has none)
-- KEYS[4]  the listing index (sorted set: job id -> created_at)
-- KEYS[5]  the queue's queued set (sorted set: job id -> when to look for its message again)
-- KEYS[6]  kombu's unacknowledged messages (hash, shared by every queue)
-- KEYS[7]  the owner's listing index (sorted set; Keyspace.absent without an owner)
-- KEYS[8]  the owner's active jobs (sorted set: job id -> created_at; likewise)
-- ARGV[1]  JSON:
--   ttl         retention in seconds of the record and the idempotency key
--   message     the task message, or '' when nothing is to run (a cached result)
--   claim       the idempotency key's value, '<job id>|<request fingerprint>', or '' when
--               the request has no Idempotency-Key
--   expires_in  seconds until the job's deadline, or '' for none
--   id          the job id
--   max_queued  most jobs queued or in flight before a new one is refused (0: no limit)
--   keep        seconds a finished job's record is kept (a cached result is finished at
--               once); also how long the listing index keeps an entry
--   owner       the owner's key id, or '' for a job without an owner
--   max_active  most active (queued or running) jobs the owner may have (0: no limit)
--   fields      the record's fields as a list of name, value, ... (with the job's input and
--               its message's delivery tag: the message itself, which only names the job, is
--               stored once, in the queue; see rescue.lua for why the tag is kept)
--
-- Returns {'replay', the idempotency key's value} when the key was used already,
-- {'full', jobs queued or in flight} when the backlog is at its limit, {'quota', the
-- owner's active jobs} when the owner is at its limit (nothing is written in these cases),
-- else {'created', created_at, deadline or ''}. A full Redis (maxmemory)
-- refuses the first write, so nothing is written then either.
local a = cjson.decode(ARGV[1])
if a.claim ~= '' then
  local existing = redis.call('GET', KEYS[3])
  if existing then return {'replay', existing} end
end
if a.message ~= '' and a.max_queued > 0 then
  local backlog = redis.call('LLEN', KEYS[2]) + redis.call('HLEN', KEYS[6])
  if backlog >= a.max_queued then return {'full', backlog} end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
-- Entries older than the retention belong to records that expired unfinished: not counted
-- (and pruned below; no write may come before the first HSET, see finish.lua on maxmemory).
local live_since = now - a.ttl
if a.message ~= '' and a.owner ~= '' and a.max_active > 0 then
  local active = redis.call('ZCOUNT', KEYS[8], live_since, '+inf')
  if active >= a.max_active then return {'quota', active} end
end
local stamp = string.format('%.6f', now)
redis.call('HSET', KEYS[1], 'created_at', stamp, unpack(a.fields))
local deadline = ''
if a.expires_in ~= '' then
  deadline = string.format('%.6f', now + tonumber(a.expires_in))
  redis.call('HSET', KEYS[1], 'deadline', deadline)
end
redis.call('EXPIRE', KEYS[1], a.ttl)
if a.message ~= '' then
  redis.call('LPUSH', KEYS[2], a.message)
  redis.call('HSET', KEYS[1], 'queue', KEYS[2])
  redis.call('ZADD', KEYS[5], now, a.id)
  if a.owner ~= '' then
    redis.call('ZADD', KEYS[8], now, a.id)
    redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', live_since)
  end
end
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then  -- a cached result: done already
  redis.call('HSET', KEYS[1], 'started_at', stamp, 'finished_at', stamp)
  redis.call('EXPIRE', KEYS[1], a.keep)
end
if a.claim ~= '' then redis.call('SET', KEYS[3], a.claim, 'EX', a.ttl) end
for i, index in ipairs({KEYS[4], KEYS[7]}) do
  if i == 1 or a.owner ~= '' then
    redis.call('ZADD', index, now, a.id)
    redis.call('ZREMRANGEBYSCORE', index, '-inf', now - a.keep)
  end
end
return {'created', stamp, deadline}

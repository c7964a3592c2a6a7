-- create: record a new job and enqueue its message, atomically, by Redis' clock (or replay
-- an idempotent one, or refuse it when the backlog is full).
--
-- The message waits in its owner's list of its lane of the fair queue (shared/broker/fair.py):
-- the owner joins the lane's ring if it had nothing waiting there, and the queue's Celery
-- list gets a doorbell when it has none, which wakes a worker's BRPOP.
--
-- KEYS[1]  the job's record (hash)
-- KEYS[2]  the Celery queue (list): the doorbell
-- KEYS[3]  the idempotency key (string; Keyspace.absent when the request has none)
-- KEYS[4]  the listing index (sorted set: job id -> created_at)
-- KEYS[5]  the fair queue's state (hash: depth per lane, ...)
-- KEYS[6]  the fair queue's held set (set: delivery tags a worker holds)
-- KEYS[7]  the owner's listing index (sorted set; Keyspace.absent without an owner)
-- KEYS[8]  the owner's active jobs and held records (sorted set: job id -> created_at while
--          active, member -> -(expiry) once ended; see _held.lua; likewise)
-- KEYS[9]  the owner's list in the job's lane (list, head newest)
-- KEYS[10] the lane's ring of owners (list)
-- KEYS[11] the fair-share weights (hash: owner -> weight)
-- KEYS[12] a plain (FIFO) queue's queued set (sorted set: job id -> when to look for its
--          message again; see rescue.lua): the training queue
-- KEYS[13..16] the webhook queue's four keys (see _webhooks.lua; Keyspace.absent without hooks)
-- ARGV[1]  JSON:
--   ttl         retention in seconds of the record and the idempotency key (a cached
--               result's key: `keep`, as its record)
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
--               stored once, in the queue)
--   lane        the job's lane (high, normal, low)
--   member      whose list in the lane it waits in, and whose turn ('-' for no owner; one
--               name for all when fair share is off)
--   weight      the owner's fair-share weight
--   doorbell    the doorbell message (shared/broker/fair.py)
--   fair        false for a plain queue: the message goes to the Celery list (KEYS[2])
--   hooks       webhook templates and doorbell (see _webhooks.lua), or false: a cached
--               result's `completed` delivery is then not queued here
--   max_records most records the owner may hold (0: no limit): its jobs until their records
--               expire, and an Idempotency-Key that outlives its job's record (a queued job's:
--               kept `ttl`); a cached result's key is kept as long as its record, counted with it
--
-- Returns {'replay', the idempotency key's value} when the key was used already,
-- {'full', jobs queued or in flight} when the backlog is at its limit, {'quota', the
-- owner's active jobs} when the owner is at its limit, {'budget', records the owner holds,
-- seconds until one of them expires} when it holds `max_records` (nothing is written in these cases),
-- else {'created', created_at, deadline or ''}. A full Redis (maxmemory)
-- refuses the first write, so nothing is written then either.
local a = cjson.decode(ARGV[1])
if a.claim ~= '' then
  local existing = redis.call('GET', KEYS[3])
  if existing then return {'replay', existing} end
end
if a.message ~= '' and a.max_queued > 0 then
  local backlog = 0
  if a.fair then
    local depth = lane_depths(KEYS[5])
    backlog = redis.call('SCARD', KEYS[6]) + depth[1] + depth[2] + depth[3]
  else
    backlog = redis.call('LLEN', KEYS[2])
  end
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
-- The record budget: counted before the first write, so a refusal writes nothing.
local queued_claim = a.claim ~= '' and a.message ~= ''  -- a queued job's key: a record of its own
if a.owner ~= '' and a.max_records > 0 then
  local held = held_count(KEYS[8], now, a.ttl)
  if held + (queued_claim and 2 or 1) > a.max_records then
    return {'budget', held, held_frees_in(KEYS[8], now, a.keep)}
  end
end
local stamp = string.format('%.6f', now)
local done = false  -- a cached result: done already
for i = 1, #a.fields, 2 do
  if a.fields[i] == 'status' then done = a.fields[i + 1] ~= 'queued' end
end
-- The record in one write: its fields, when it was created, its deadline, the queue it waits
-- in, and for a cached result when it started and finished (now).
local extra = {'created_at', stamp}
local deadline = ''
if a.expires_in ~= '' then
  deadline = string.format('%.6f', now + tonumber(a.expires_in))
  extra[#extra + 1] = 'deadline'
  extra[#extra + 1] = deadline
end
if a.message ~= '' then
  extra[#extra + 1] = 'queue'
  extra[#extra + 1] = KEYS[2]
end
for _, v in ipairs(a.fields) do extra[#extra + 1] = v end
if done then
  for _, v in ipairs({'started_at', stamp, 'finished_at', stamp}) do extra[#extra + 1] = v end
end
redis.call('HSET', KEYS[1], unpack(extra))
redis.call('EXPIRE', KEYS[1], done and a.keep or a.ttl)
if a.message ~= '' then
  if not a.fair then
    redis.call('LPUSH', KEYS[2], a.message)
    redis.call('ZADD', KEYS[12], now, a.id)
  else
    if redis.call('LPUSH', KEYS[9], a.message) == 1 then
      redis.call('RPUSH', KEYS[10], a.member)
      redis.call('HSET', KEYS[11], a.member, a.weight)
    end
    redis.call('HINCRBY', KEYS[5], 'depth:' .. a.lane, 1)
    if redis.call('LLEN', KEYS[2]) == 0 then redis.call('LPUSH', KEYS[2], a.doorbell) end
  end
  if a.owner ~= '' then redis.call('ZADD', KEYS[8], now, a.id) end
end
if done then webhook_event(KEYS[1], a.id, 'completed', a.hooks, 13) end  -- a cached result's delivery
-- A cached result's Idempotency-Key lives no longer than its record (the replay of an
-- expired job answers 409 anyway): one record for the budget.
if a.claim ~= '' then redis.call('SET', KEYS[3], a.claim, 'EX', queued_claim and a.ttl or a.keep) end
if a.owner ~= '' then
  if a.message == '' then redis.call('ZADD', KEYS[8], -(now + a.keep), a.id) end
  if queued_claim then redis.call('ZADD', KEYS[8], -(now + a.ttl), a.id .. ':idem') end
  held_prune(KEYS[8], now, a.ttl)
end
-- The listings' expired entries are pruned by one job in sixteen (its random id ends in 0):
-- each entry is still removed once, in batches sixteen times larger, for an eighth of the
-- commands. GET /jobs skips an entry whose record expired.
local prune = string.sub(a.id, -1) == '0'
for i, index in ipairs({KEYS[4], KEYS[7]}) do
  if i == 1 or a.owner ~= '' then
    redis.call('ZADD', index, now, a.id)
    if prune then redis.call('ZREMRANGEBYSCORE', index, '-inf', now - a.keep) end
  end
end
return {'created', stamp, deadline}

-- webhook_retry: schedule the next attempt of a webhook delivery (or a deferred one: its
-- owner had too many attempts under way, or its receiver's breaker is open). The attempt
-- waits in Redis, not in a worker's memory, so it survives worker restarts; webhook_due.lua
-- moves it onto the webhook queue once due. Both read Redis' clock, so no two clocks disagree.
--
-- Bounded: no attempt is scheduled, and the record is never kept, past `cap` seconds after
-- the job finished (for a job still running: after it started, or was created). A batch's
-- record (a string) is never kept longer than it was to live.
--
-- KEYS[1]  the retry schedule (sorted set: task message -> when it is due, Unix seconds)
-- KEYS[2]  the job's record (hash), or the batch's (string)
-- KEYS[3]  the owner's held records (see _held.lua; Keyspace.absent without an owner): the
--          record's count there follows its longer life
-- ARGV[1]  JSON:
--   delay    seconds from now until the attempt is due
--   grace    seconds the record is kept after the attempt is due, at least (within the cap;
--            a schedule may outlast the record's TTL)
--   cap      WEBHOOK_RETRY_KEEP_SECONDS
--   message  the delivery's task message
--   member   the record's member in KEYS[3] ('' without an owner)
--
-- Returns 1 when scheduled, 0 when the record is gone, -1 when the attempt would be due past
-- the cap (nothing scheduled, nothing kept: the delivery fails for good).
local a = cjson.decode(ARGV[1])
local ttl = redis.call('TTL', KEYS[2])
if ttl == -2 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local due = now + a.delay
local keep_until = now
if redis.call('TYPE', KEYS[2])['ok'] == 'hash' then
  local f = redis.call('HMGET', KEYS[2], 'finished_at', 'started_at', 'created_at')
  local since = tonumber(f[1]) or tonumber(f[2]) or tonumber(f[3]) or now
  if due > since + a.cap then return -1 end
  keep_until = math.min(due + a.grace, since + a.cap)
elseif ttl >= 0 and due > now + ttl then
  return -1
end
local keep = math.ceil(keep_until - now)
if ttl >= 0 and ttl < keep then
  redis.call('EXPIRE', KEYS[2], keep)
  if a.member ~= '' then held_longer(KEYS[3], a.member, math.floor(now) + keep) end
end
redis.call('ZADD', KEYS[1], due, a.message)
return 1

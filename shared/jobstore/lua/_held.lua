-- (prepended to the scripts that count or end an owner's records; see Keyspace.active)
-- An owner's set holds job id -> created_at (> 0) while the job is queued or running (its
-- quota), and member -> -(when Redis lets it go) for what lives on ended: finished jobs,
-- cached results, Idempotency-Keys, batch handles (its record budget). One set, signed
-- scores, so that the scripts ending a job (given the owner's active set by _routes.lua)
-- move it from one count to the other with one write, no extra key.

-- A member ended now: held until `expires` (Redis' clock). XX: an entry pruned already (or
-- from before the budget) is not brought back.
local function held_until(set, member, expires)
  redis.call('ZADD', set, 'XX', -expires, member)
end

-- A held member's life was extended to `expires` (a webhook retry keeps its record): its
-- count follows. Only an ended member: an active one is held from when it ends.
local function held_longer(set, member, expires)
  local score = tonumber(redis.call('ZSCORE', set, member))
  if score and score < 0 and -score < expires then redis.call('ZADD', set, 'XX', -expires, member) end
end

-- What the owner holds at `now`: ended members not yet expired, and active jobs younger
-- than `ttl` (older ones expired unfinished). Two O(log n) counts, whatever the set's size.
local function held_count(set, now, ttl)
  return redis.call('ZCOUNT', set, '-inf', string.format('(%.6f', -now))
      + redis.call('ZCOUNT', set, string.format('(%.6f', now - ttl), '+inf')
end

-- Seconds until the owner's next ended member expires (`keep`, a finished job's retention,
-- when none has ended: an active job is held that long once it ends). Bounded: LIMIT 1.
local function held_frees_in(set, now, keep)
  local soonest = redis.call('ZREVRANGEBYSCORE', set, string.format('(%.6f', -now), '-inf',
                             'WITHSCORES', 'LIMIT', 0, 1)
  if #soonest == 0 then return keep end
  return math.max(1, math.ceil(-tonumber(soonest[2]) - now))
end

-- Drop what expired: ended members whose time passed, active jobs older than `ttl`. Each
-- entry is removed once, so the work is bounded by what was added.
local function held_prune(set, now, ttl)
  redis.call('ZREMRANGEBYSCORE', set, string.format('%.6f', -now), string.format('%.6f', now - ttl))
end

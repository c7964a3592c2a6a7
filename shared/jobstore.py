"""Job state in Redis, owned by this project (Celery's result backend is not used).

One hash per job at ``job:<id>`` with a retention TTL, and a sorted set indexing jobs by
creation time for listing. Every state change is a Lua script, so each is atomic:

    create   record + task message (+ idempotency key) together, or nothing
    start    queued -> running (or -> failed/expired past its deadline)    [worker]
    finish   running -> succeeded/failed, fills the result cache           [worker]
    cancel   queued -> cancelled                                           [API]

A job therefore can never be both cancelled and run, and an expired record is never
resurrected. Finishing, cancelling and expiring publish the job ids on FINISHED_CHANNEL,
which wakes the API's long-polls.
"""

import json
import time
import uuid
from datetime import datetime, timezone
from typing import NamedTuple

import redis
import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from shared.backlog import UNACKED_HASH
from shared.registry import Manifest
from shared.schemas import Job, JobError, JobStatus, Prediction, WebhookState

WORKER_PREFIX = "worker:"
FINISHED_CHANNEL = "jobs:finished"
INDEX_KEY = "jobs:index"
QUEUED_KEY = "jobs:queued"

# KEYS: job, queue, idempotency key ('' for none), index, queued set.
# ARGV: ttl, message ('' when nothing is to run), idempotency value, created_at, id, then field pairs.
# The message is also kept on the record until the job starts: see _RESCUE.
_CREATE = """
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
"""

# ARGV: now, expired-error json, channel, queued set. Returns per key {status before, webhook events}.
_START = """
local out, expired = {}, {}
for i, key in ipairs(KEYS) do
  local f = redis.call('HMGET', key, 'status', 'deadline', 'webhook_events')
  local status = f[1]
  if status == 'queued' then
    redis.call('HDEL', key, 'message')
    redis.call('ZREM', ARGV[4], string.sub(key, 5))
    if f[2] and tonumber(f[2]) < tonumber(ARGV[1]) then
      redis.call('HSET', key, 'status', 'failed', 'error', ARGV[2], 'finished_at', ARGV[1])
      expired[#expired + 1] = string.sub(key, 5)
      status = 'expired'
    else
      redis.call('HSET', key, 'status', 'running', 'started_at', ARGV[1])
    end
  end
  out[i] = {status or '', f[3] or ''}
end
if #expired > 0 then redis.call('PUBLISH', ARGV[3], table.concat(expired, ',')) end
return out
"""

# ARGV: finished_at, channel, cache ttl, then per key a (status, field, json value) triple.
_FINISH = """
local done = {}
for i, key in ipairs(KEYS) do
  local at = 3 + (i - 1) * 3
  if redis.call('HGET', key, 'status') == 'running' then
    redis.call('HSET', key, 'status', ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], 'finished_at', ARGV[1])
    done[#done + 1] = string.sub(key, 5)
    local cache_key = redis.call('HGET', key, 'cache_key')
    if cache_key and ARGV[at + 1] == 'succeeded' and tonumber(ARGV[3]) > 0 then
      redis.call('SET', cache_key, ARGV[at + 3], 'EX', ARGV[3])
    end
  end
end
if #done > 0 then redis.call('PUBLISH', ARGV[2], table.concat(done, ',')) end
return done
"""

# KEYS: job, queued set. ARGV: now, channel. Returns the status before the call ('' when gone).
_CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[1])
  redis.call('HDEL', KEYS[1], 'message')
  redis.call('ZREM', KEYS[2], string.sub(KEYS[1], 5))
  redis.call('PUBLISH', ARGV[2], string.sub(KEYS[1], 5))
end
return status or ''
"""

# kombu's Redis transport pops a message (BRPOP) and records it as unacknowledged in a second
# call: a Redis stop between the two loses the message, though the job is still queued. This
# sweep puts back the kept message of any job queued longer than the visibility timeout whose
# message is neither in the queue nor unacknowledged. A rare duplicate is harmless: _START
# runs a job once.
# KEYS: queued set, queue, unacked hash. ARGV: cutoff (created before), now, limit.
_RESCUE = """
local pushed = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))) do
  local f = redis.call('HMGET', 'job:' .. id, 'status', 'message')
  if f[1] ~= 'queued' or not f[2] then
    redis.call('ZREM', KEYS[1], id)
  else
    local tag = cjson.decode(f[2])['properties']['delivery_tag']
    if not redis.call('LPOS', KEYS[2], f[2]) and redis.call('HEXISTS', KEYS[3], tag) == 0 then
      redis.call('LPUSH', KEYS[2], f[2])
      pushed = pushed + 1
    end
    redis.call('ZADD', KEYS[1], ARGV[2], id)  -- look again one visibility timeout later
  end
end
return pushed
"""

_WEBHOOK_ATTEMPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local state = cjson.decode(ARGV[1])
state['attempts'] = redis.call('HINCRBY', KEYS[1], 'webhook_attempts', 1)
redis.call('HSET', KEYS[1], 'webhook', cjson.encode(state))
return state['attempts']
"""


def job_key(job_id: str) -> str:
    return f"job:{job_id}"


def new_job_id() -> str:
    return uuid.uuid4().hex


class Started(NamedTuple):
    before: JobStatus | None  # None: gone; "expired" jobs come back as failed
    expired: bool
    webhook_events: str


class NewJob(NamedTuple):
    """What a submission records: the record's fields and, unless served from the cache,
    the message to enqueue."""

    fields: dict[str, str]
    message: str
    idempotency_key: str
    idempotency_value: str


def new_record(
    manifest: Manifest,
    job_id: str,
    *,
    deadline: float | None = None,
    webhook_url: str | None = None,
    webhook_events: list[str] | None = None,
    cache_key: str | None = None,
    cached_result: str | None = None,
) -> dict[str, str]:
    now = repr(time.time())
    fields = {
        "id": job_id,
        "status": JobStatus.queued.value,
        "model_name": manifest.name,
        "model_version": manifest.version,
        "created_at": now,
    }
    if deadline is not None:
        fields["deadline"] = repr(deadline)
    if webhook_url:
        fields["webhook_url"] = webhook_url
        fields["webhook_events"] = ",".join(webhook_events or ["completed"])
        fields["webhook"] = WebhookState().model_dump_json()
    if cache_key:
        fields["cache_key"] = cache_key
    if cached_result is not None:
        fields.update(status=JobStatus.succeeded.value, result=cached_result, cached="1",
                      started_at=now, finished_at=now)
    return fields


def to_job(fields: dict[str, str]) -> Job:
    return Job(
        id=fields["id"],
        status=JobStatus(fields["status"]),
        model={"name": fields["model_name"], "version": fields["model_version"]},
        result=json.loads(fields["result"]) if fields.get("result") else None,
        error=json.loads(fields["error"]) if fields.get("error") else None,
        cached=bool(fields.get("cached")),
        created_at=_when(fields["created_at"]),
        started_at=_when(fields.get("started_at")),
        finished_at=_when(fields.get("finished_at")),
        expires_at=_when(fields.get("deadline")),
        webhook=json.loads(fields["webhook"]) if fields.get("webhook") else None,
    )


def _when(value: str | None) -> datetime | None:
    return datetime.fromtimestamp(float(value), tz=timezone.utc) if value else None


def _create_call(new: NewJob, queue: str, ttl: int) -> tuple[list, list]:
    fields = new.fields
    keys = [job_key(fields["id"]), queue, new.idempotency_key, INDEX_KEY, QUEUED_KEY]
    pairs = [v for item in fields.items() for v in item]
    args = [ttl, new.message, new.idempotency_value, fields["created_at"], fields["id"], *pairs]
    return keys, args


def _expired_error() -> str:
    return JobError(code="expired", message="the job's deadline (expires_in) passed before it ran").model_dump_json()


class JobStore:
    """The worker's (and tests') side of the store: synchronous redis-py."""

    def __init__(self, client: redis.Redis, ttl_seconds: int, cache_ttl_seconds: int = 0):
        self.redis = client
        self.ttl = ttl_seconds
        self.cache_ttl = cache_ttl_seconds
        self._create = client.register_script(_CREATE)
        self._start = client.register_script(_START)
        self._finish = client.register_script(_FINISH)
        self._webhook_attempt = client.register_script(_WEBHOOK_ATTEMPT)
        self._rescue = client.register_script(_RESCUE)

    @classmethod
    def from_url(cls, url: str, ttl_seconds: int, timeout: float, retries: int = 0,
                 cache_ttl_seconds: int = 0) -> "JobStore":
        """retries > 0 rides out a Redis restart (the worker); 0 fails fast."""
        client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
            retry=Retry(ExponentialBackoff(cap=4, base=0.1), retries),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        return cls(client, ttl_seconds, cache_ttl_seconds)

    def create(self, manifest: Manifest, job_id: str | None = None, **record) -> Job:
        """A queued record with no message (tests use it to drive the worker by hand)."""
        fields = new_record(manifest, job_id or new_job_id(), **record)
        keys, args = _create_call(NewJob(fields, "", "", ""), "unused", self.ttl)
        self._create(keys=keys, args=args)
        return to_job(fields)

    def get(self, job_id: str) -> Job | None:
        fields = self.redis.hgetall(job_key(job_id))
        return to_job(fields) if fields else None

    def start(self, job_ids: list[str]) -> list[Started]:
        """Mark queued jobs running (or expired); reports each job's state before the call."""
        if not job_ids:
            return []
        rows = self._start(
            keys=[job_key(j) for j in job_ids],
            args=[repr(time.time()), _expired_error(), FINISHED_CHANNEL, QUEUED_KEY],
        )
        return [
            Started(None if not s else (JobStatus.queued if s == "expired" else JobStatus(s)), s == "expired", ev)
            for s, ev in rows
        ]

    def finish(self, outcomes: dict[str, Prediction | JobError]) -> list[str]:
        """Record terminal outcomes of running jobs in one round trip; returns the ids recorded."""
        if not outcomes:
            return []
        args = [repr(time.time()), FINISHED_CHANNEL, self.cache_ttl]
        for outcome in outcomes.values():
            if isinstance(outcome, Prediction):
                args += [JobStatus.succeeded.value, "result", outcome.model_dump_json()]
            else:
                args += [JobStatus.failed.value, "error", outcome.model_dump_json()]
        return self._finish(keys=[job_key(j) for j in outcomes], args=args)

    def webhook_target(self, job_id: str) -> tuple[Job | None, str | None]:
        """The job as a receiver will see it, and where to send it."""
        fields = self.redis.hgetall(job_key(job_id))
        return (to_job(fields), fields.get("webhook_url")) if fields else (None, None)

    def record_webhook_attempt(self, job_id: str, state: WebhookState) -> None:
        """Count one more attempt and store the outcome. Atomic, as deliveries of a job's
        events run concurrently; never brings back an expired record."""
        self._webhook_attempt(keys=[job_key(job_id)], args=[state.model_dump_json()])

    def rescue_lost(self, queue: str, older_than: float, limit: int = 100) -> int:
        """Re-queue jobs whose message Redis lost in delivery (see _RESCUE); returns how many."""
        now = time.time()
        return self._rescue(keys=[QUEUED_KEY, queue, UNACKED_HASH], args=[repr(now - older_than), repr(now), limit])

    def heartbeat(self, hostname: str, ttl: int) -> None:
        self.redis.set(WORKER_PREFIX + hostname, repr(time.time()), ex=ttl)

    def forget_worker(self, hostname: str) -> None:
        self.redis.delete(WORKER_PREFIX + hostname)

    def workers(self) -> list[str]:
        return sorted(k.removeprefix(WORKER_PREFIX) for k in self.redis.scan_iter(WORKER_PREFIX + "*"))


class AsyncJobStore:
    """The API's side of the store (redis.asyncio): no thread hop, one round trip per call."""

    def __init__(self, client: aioredis.Redis, ttl_seconds: int):
        self.redis = client
        self.ttl = ttl_seconds
        self._create = client.register_script(_CREATE)
        self._cancel = client.register_script(_CANCEL)

    @classmethod
    def from_url(cls, url: str, ttl_seconds: int, timeout: float) -> "AsyncJobStore":
        client = aioredis.Redis.from_url(
            url, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout,
            health_check_interval=30,
        )
        return cls(client, ttl_seconds)

    async def create(self, new: NewJob, queue: str) -> tuple[Job | None, str | None]:
        """Record the job and push its message atomically. With an idempotency key already
        used, nothing is written and (None, the key's stored value) comes back."""
        keys, args = _create_call(new, queue, self.ttl)
        existing = await self._create(keys=keys, args=args)
        return (None, existing) if existing else (to_job(new.fields), None)

    async def get(self, job_id: str) -> Job | None:
        fields = await self.redis.hgetall(job_key(job_id))
        return to_job(fields) if fields else None

    async def get_fields(self, job_id: str, *names: str) -> list[str | None]:
        return await self.redis.hmget(job_key(job_id), names)

    async def cancel(self, job_id: str) -> JobStatus | None:
        """Cancel a queued job; returns its status before the call (None: unknown)."""
        before = await self._cancel(keys=[job_key(job_id), QUEUED_KEY], args=[repr(time.time()), FINISHED_CHANNEL])
        return JobStatus(before) if before else None

    async def cached_result(self, cache_key: str) -> str | None:
        return await self.redis.get(cache_key)

    async def push(self, queue: str, message: str) -> None:
        await self.redis.lpush(queue, message)

    async def recent(self, limit: int, before: float | None, status: str | None,
                     scan_limit: int = 1000) -> tuple[list[Job], float | None]:
        """Newest first, created before `before`; filtered by status, examining at most
        scan_limit index entries per call. Returns the page and the next cursor."""
        high = f"({before!r}" if before is not None else "+inf"
        entries = await self.redis.zrevrangebyscore(INDEX_KEY, high, "-inf", start=0, num=scan_limit,
                                                    withscores=True)
        jobs, cursor = [], None
        for start in range(0, len(entries), 100):
            chunk = entries[start : start + 100]
            pipe = self.redis.pipeline(transaction=False)
            for job_id, _ in chunk:
                pipe.hgetall(job_key(job_id))
            for (job_id, score), fields in zip(chunk, await pipe.execute()):
                cursor = score
                if fields and (status is None or fields["status"] == status):
                    jobs.append(to_job(fields))
                    if len(jobs) == limit:
                        return jobs, score
        return jobs, (cursor if len(entries) == scan_limit else None)

    async def workers(self) -> list[str]:
        return sorted([k.removeprefix(WORKER_PREFIX) async for k in self.redis.scan_iter(WORKER_PREFIX + "*")])

"""Job state in Redis, owned by this project (Celery's result backend is not used).

One hash per job at ``job:<id>`` with a retention TTL. The API creates it before the task
is enqueued; the worker moves it queued -> running -> succeeded/failed with Lua scripts so
each transition is atomic and never resurrects a record that has expired.
"""

import json
import time
import uuid
from datetime import datetime, timezone

from collections.abc import Callable

import redis
import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from shared.registry import Manifest
from shared.schemas import Job, JobError, JobStatus, Prediction

_START = """
local out = {}
for i, key in ipairs(KEYS) do
  local status = redis.call('HGET', key, 'status')
  if status == 'queued' then
    redis.call('HSET', key, 'status', 'running', 'started_at', ARGV[1])
  end
  out[i] = status or ''
end
return out
"""

# ARGV: finished_at, channel, then per key a (status, field, json value) triple.
# One message per batch, listing the finished ids, wakes the API's long-polls.
_FINISH = """
local done = {}
for i, key in ipairs(KEYS) do
  local at = 2 + (i - 1) * 3
  local status = redis.call('HGET', key, 'status')
  if status == 'running' or status == 'queued' then
    redis.call('HSET', key, 'status', ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], 'finished_at', ARGV[1])
    done[#done + 1] = string.sub(key, 5)
  end
end
if #done > 0 then
  redis.call('PUBLISH', ARGV[2], table.concat(done, ','))
end
return #done
"""


WORKER_PREFIX = "worker:"
FINISHED_CHANNEL = "jobs:finished"


def job_key(job_id: str) -> str:
    return f"job:{job_id}"


def new_job_id() -> str:
    return uuid.uuid4().hex


def new_record(manifest: Manifest, job_id: str) -> dict[str, str]:
    return {
        "id": job_id,
        "status": JobStatus.queued.value,
        "model_name": manifest.name,
        "model_version": manifest.version,
        "created_at": repr(time.time()),
    }


def to_job(fields: dict[str, str]) -> Job:
    return Job(
        id=fields["id"],
        status=JobStatus(fields["status"]),
        model={"name": fields["model_name"], "version": fields["model_version"]},
        result=json.loads(fields["result"]) if fields.get("result") else None,
        error=json.loads(fields["error"]) if fields.get("error") else None,
        created_at=_when(fields["created_at"]),
        started_at=_when(fields.get("started_at")),
        finished_at=_when(fields.get("finished_at")),
    )


def _when(value: str | None) -> datetime | None:
    return datetime.fromtimestamp(float(value), tz=timezone.utc) if value else None


class JobStore:
    def __init__(self, client: redis.Redis, ttl_seconds: int):
        self.redis = client
        self.ttl = ttl_seconds
        self._start = client.register_script(_START)
        self._finish = client.register_script(_FINISH)

    @classmethod
    def from_url(cls, url: str, ttl_seconds: int, timeout: float, retries: int = 0) -> "JobStore":
        """retries > 0 rides out a Redis restart (the worker); 0 fails fast (the API answers 503)."""
        client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
            retry=Retry(ExponentialBackoff(cap=4, base=0.1), retries),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        return cls(client, ttl_seconds)

    def create(self, manifest: Manifest, job_id: str | None = None) -> Job:
        fields = new_record(manifest, job_id or new_job_id())
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(job_key(fields["id"]), mapping=fields)
        pipe.expire(job_key(fields["id"]), self.ttl)
        pipe.execute()
        return to_job(fields)

    def delete(self, job_id: str) -> None:
        self.redis.delete(job_key(job_id))

    def get(self, job_id: str) -> Job | None:
        fields = self.redis.hgetall(job_key(job_id))
        return to_job(fields) if fields else None

    def start(self, job_ids: list[str]) -> list[JobStatus | None]:
        """Mark queued jobs running; returns each job's status *before* the call (None: gone)."""
        if not job_ids:
            return []
        before = self._start(keys=[job_key(j) for j in job_ids], args=[repr(time.time())])
        return [JobStatus(s) if s else None for s in before]

    def finish(self, outcomes: dict[str, Prediction | JobError]) -> None:
        """Record terminal outcomes for running jobs in one round trip."""
        if not outcomes:
            return
        args = [repr(time.time()), FINISHED_CHANNEL]
        for outcome in outcomes.values():
            if isinstance(outcome, Prediction):
                args += [JobStatus.succeeded.value, "result", outcome.model_dump_json()]
            else:
                args += [JobStatus.failed.value, "error", outcome.model_dump_json()]
        self._finish(keys=[job_key(j) for j in outcomes], args=args)

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

    @classmethod
    def from_url(cls, url: str, ttl_seconds: int, timeout: float) -> "AsyncJobStore":
        client = aioredis.Redis.from_url(
            url, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout,
            health_check_interval=30,
        )
        return cls(client, ttl_seconds)

    async def create_and_enqueue(self, manifest: Manifest, queue: str, message: Callable[[str], str]) -> Job:
        """Record the job and push its message atomically: both or neither."""
        fields = new_record(manifest, new_job_id())
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(job_key(fields["id"]), mapping=fields)
        pipe.expire(job_key(fields["id"]), self.ttl)
        pipe.lpush(queue, message(fields["id"]))
        await pipe.execute()
        return to_job(fields)

    async def get(self, job_id: str) -> Job | None:
        fields = await self.redis.hgetall(job_key(job_id))
        return to_job(fields) if fields else None

    async def workers(self) -> list[str]:
        return sorted([k.removeprefix(WORKER_PREFIX) async for k in self.redis.scan_iter(WORKER_PREFIX + "*")])

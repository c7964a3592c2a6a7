"""The two faces of the job store: `JobStore` for the worker (redis-py, synchronous) and
`AsyncJobStore` for the API (redis.asyncio: no thread hop). Each method sends one op from
shared.jobstore.ops, where all the logic is; nothing outside reaches the Redis client."""

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import redis
import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from shared.broker.envelopes import WebhookHooks
from shared.jobstore import sending
from shared.jobstore.keys import DEFAULT_KEYSPACE, Keyspace
from shared.jobstore.ops import JobOps
from shared.jobstore.records import NewJob
from shared.jobstore.replies import SCRIPTS, Cancelled, Created, Held, Lost, Op, Started
from shared.redisconn import NotReplicated, Where, as_target, async_pool, sync_client
from shared.schemas import (
    Batch,
    Job,
    JobError,
    JobStatus,
    Prediction,
    Serves,
    TrainingProgress,
    TrainingResult,
    WebhookEvent,
    WebhookState,
    WorkerInfo,
)

T = TypeVar("T")
C = TypeVar("C", redis.Redis, aioredis.Redis)


def _options(timeout: float) -> dict[str, Any]:
    return {"decode_responses": True, "socket_timeout": timeout, "socket_connect_timeout": timeout,
            "health_check_interval": 30}


class _Face(Generic[C]):
    """A client, the ops and the scripts registered on that client."""

    def __init__(self, client: C, ops: JobOps, replicas: int = 0, wait_timeout_ms: int = 1000):
        self._redis: C = client
        self.ops, self.keys = ops, ops.keys
        # REDIS_MIN_REPLICAS_ACKED: the writes that acknowledge something wait for replicas.
        self.replicas, self.wait_timeout_ms = replicas, wait_timeout_ms
        self._scripts: dict[str, Any] = {name: client.register_script(text) for name, text in SCRIPTS.items()}


class JobStore(_Face[redis.Redis]):
    """The worker's side (and the tests'): synchronous."""

    @classmethod
    def connect(cls, url: Where, ttl_seconds: int, timeout: float, retries: int = 0,
                cache_ttl_seconds: int = 0, keys: Keyspace = DEFAULT_KEYSPACE,
                finished_ttl_seconds: int | None = None, hooks: WebhookHooks | None = None) -> "JobStore":
        """retries > 0 rides out a Redis restart or a Sentinel failover (the worker); 0 fails
        fast. With `hooks`, the scripts that end or start jobs queue their webhook deliveries
        (shared.jobstore.ops.base). `url`: a URL or a shared.redisconn.RedisTarget."""
        where = as_target(url)
        retry = Retry(ExponentialBackoff(cap=4, base=0.1), retries)
        client = sync_client(where, **_options(timeout), retry=retry,
                             retry_on_error=[RedisConnectionError, RedisTimeoutError])
        store = cls(client, JobOps(keys, ttl_seconds, cache_ttl_seconds, finished_ttl_seconds, hooks),
                    where.min_replicas, where.wait_timeout_ms)
        store._retry = Retry(ExponentialBackoff(cap=4, base=0.1), retries,
                             supported_errors=(RedisConnectionError, RedisTimeoutError, NotReplicated))
        return store

    _retry: Retry | None = None

    def _run(self, op: Op[T]) -> T:
        return sending.run(self._redis, self._scripts, op)

    def _run_replicated(self, op: Op[T]) -> T:
        if not self.replicas:
            return self._run(op)
        return sending.run_replicated(self._redis, self._scripts, op, self.replicas, self.wait_timeout_ms,
                                      self._retry)

    def create(self, new: NewJob, queue: str, max_queued: int = 0, fair: bool = True) -> Created:
        return self._run(self.ops.create(new, queue, max_queued, fair=fair))

    def get(self, job_id: str) -> Job | None:
        return self._run(self.ops.get(job_id))

    def start(self, job_ids: list[str], run: str, lease_seconds: float = 60, max_runs: int = 3) -> list[Started]:
        """Lease queued jobs (and running ones whose lease ended) to `run`, or fail them
        (deadline passed, or lost too often); each job's state before the call."""
        return self._run(self.ops.start(job_ids, run, lease_seconds, max_runs)) if job_ids else []

    def finish(self, outcomes: Mapping[str, Prediction | TrainingResult | JobError], run: str) -> list[str]:
        """Record the terminal outcomes of `run`'s jobs in one round trip; every id this run
        finished (a retried call reports them again). With REDIS_MIN_REPLICAS_ACKED, returns
        once the finish reached that many replicas (else NotReplicated): the caller acknowledges
        the messages only then."""
        return self._run_replicated(self.ops.finish(outcomes, run)) if outcomes else []

    def renew(self, job_ids: list[str], run: str, lease_seconds: float) -> int:
        return self._run(self.ops.renew(job_ids, run, lease_seconds)) if job_ids else 0

    def progress(self, job_id: str, run: str, progress: TrainingProgress) -> bool:
        """Record a training job's progress; False when `run` no longer holds the job."""
        return self._run(self.ops.progress(job_id, run, progress))

    def sweep_lost(self, grace_seconds: float, limit: int = 100) -> dict[str, list[WebhookEvent]]:
        return self._run(self.ops.sweep_lost(grace_seconds, limit))

    def webhook_target(self, job_id: str) -> tuple[Job | None, str | None, str | None]:
        """The job, its webhook URL and its owner (an API key id, or None)."""
        return self._run(self.ops.webhook_target(job_id))

    def run(self, op: Op[T]) -> T:
        """Send an op built elsewhere (shared.apikeys.KeyOps: the webhook worker's key lookup)."""
        return self._run(op)

    def record_webhook_attempt(self, job_id: str, state: WebhookState, count: bool = True) -> int:
        return self._run(self.ops.record_webhook_attempt(job_id, state, count))

    def find_lost(self, queue: str, older_than: float, limit: int = 100) -> list[Lost]:
        """Jobs queued over `older_than` seconds whose message Redis lost in delivery."""
        return self._run(self.ops.find_lost(queue, older_than, limit))

    def requeue(self, queue: str, messages: dict[str, tuple[str, str]]) -> int:
        return self._run(self.ops.requeue(queue, messages)) if messages else 0

    def push(self, queue: str, messages: list[str]) -> int:
        return self._run(self.ops.push(queue, messages))

    def release_training_slot(self, job_id: str) -> bool:
        return self._run(self.ops.release_training_slot(job_id))

    def backlog(self, queue: str) -> dict[str, Any]:
        return self._run(self.ops.backlog(queue))

    def ring(self, queue: str) -> bool:
        return self._run(self.ops.ring(queue))

    def heartbeat(self, hostname: str, ttl: int, serves: Serves | None = None) -> None:
        self._run(self.ops.heartbeat(hostname, ttl, serves or Serves()))

    def forget_worker(self, hostname: str) -> None:
        self._run(self.ops.forget_worker(hostname))

    def workers(self) -> list[WorkerInfo]:
        return self._run(self.ops.workers())

    def ping(self) -> bool:
        return self._run(self.ops.ping())

    def close(self) -> None:
        self._redis.close()

    def schedule_webhook_retry(self, queue: str, job_id: str, message: str, delay: float, keep: float,
                               cap: float, batch: bool = False, owner: str | None = None) -> int:
        """Deliver `message` on `queue` `delay` seconds from now, keeping the job's (with
        `batch`, the batch's) record at least `keep` seconds beyond that, but never past `cap`
        seconds after the job finished: 1; 0 when the record is gone; -1 past the cap
        (nothing scheduled in either case). `owner`: whose record budget counts the record."""
        return self._run(self.ops.schedule_webhook_retry(queue, job_id, message, delay, keep, cap, batch, owner))

    def webhook_gate(self, owner: str | None, receiver: str, token: str, lease: float, max_in_flight: int,
                     cooldown: float) -> tuple[str, float]:
        return self._run(self.ops.webhook_gate(owner, receiver, token, lease, max_in_flight, cooldown))

    def webhook_done(self, owner: str | None, receiver: str, token: str, failed: bool, failures: int,
                     cooldown: float, window: float) -> int:
        return self._run(self.ops.webhook_done(owner, receiver, token, failed, failures, cooldown, window))

    def move_due_webhooks(self, queue: str, limit: int = 100) -> int:
        """Move at most `limit` due retries onto the queue; how many it moved."""
        return self._run(self.ops.move_due_webhooks(queue, limit))


class AsyncJobStore(_Face[aioredis.Redis]):
    """The API's side: asynchronous, one round trip per call."""

    @classmethod
    def connect(cls, url: Where, ttl_seconds: int, timeout: float, max_connections: int = 64,
                keys: Keyspace = DEFAULT_KEYSPACE, finished_ttl_seconds: int | None = None,
                hooks: WebhookHooks | None = None) -> "AsyncJobStore":
        """No retries: when Redis is down the client gets a 503 at once, not a hung request.
        With every connection busy, a request waits for one (up to `timeout`) instead of
        failing at once: a burst of requests is not an unavailable Redis."""
        where = as_target(url)
        pool = async_pool(where, max_connections, timeout, **_options(timeout))
        return cls(aioredis.Redis.from_pool(pool), JobOps(keys, ttl_seconds, finished_ttl_seconds=finished_ttl_seconds,
                                                          hooks=hooks), where.min_replicas, where.wait_timeout_ms)

    async def _run(self, op: Op[T]) -> T:
        return await sending.run_async(self._redis, self._scripts, op)

    async def _run_replicated(self, op: Op[T]) -> T:
        if not self.replicas:
            return await self._run(op)
        return await sending.run_replicated_async(self._redis, self._scripts, op, self.replicas,
                                                  self.wait_timeout_ms)

    async def create(self, new: NewJob, queue: str, max_queued: int = 0, max_active: int = 0,
                     fair: bool = True, max_records: int = 0) -> Created:
        """With REDIS_MIN_REPLICAS_ACKED, returns once the record and message reached that many
        replicas; NotReplicated when fewer took them in time (the job exists on the primary).
        A replay (an Idempotency-Key seen before, maybe answered 503 then) waits too: for a
        write of its own, which a replica has only once it has the earlier create."""
        created = await self._run_replicated(self.ops.create(new, queue, max_queued, max_active, fair, max_records))
        if self.replicas and created.replay is not None:
            await self._run_replicated(Op(("SET", self.keys.replicated, created.replay.job_id), lambda _: None))
        return created

    async def held(self, owner: str) -> Held:
        """The records `owner` holds against its budget, and when the next expires."""
        return await self._run(self.ops.held(owner))

    async def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job, unless it is gone or (with `owner`) another owner's."""
        return await self._run(self.ops.get(job_id, owner))

    async def cancel(self, job_id: str, owner: str | None = None) -> Cancelled:
        """Cancel a queued job; its status before the call and its record after (with
        `owner`, another owner's job is reported as gone)."""
        return await self._run(self.ops.cancel(job_id, owner))

    async def create_batch(self, batch_id: str, job_ids: list[str], owner: str | None = None,
                           webhook: tuple[str, str, str] | None = None) -> int:
        return await self._run(self.ops.create_batch(batch_id, job_ids, owner, webhook))

    async def batch(self, batch_id: str, offset: int = 0, limit: int = 100, owner: str | None = None) -> Batch | None:
        """The batch, its counts and a page of its jobs; None when gone or another owner's."""
        return await self._run(self.ops.batch(batch_id, offset, limit, owner))

    async def cached_result(self, cache_key: str) -> str | None:
        return await self._run(self.ops.cached_result(cache_key))

    async def push(self, queue: str, messages: list[str]) -> int:
        return await self._run(self.ops.push(queue, messages))

    async def recent(self, limit: int, before: float | None, status: JobStatus | None,
                     scan_limit: int = 1000, owner: str | None = None) -> tuple[list[Job], float | None]:
        """Newest first (`owner`'s jobs only, unless None); the page and the next cursor."""
        return await self._run(self.ops.recent(limit, before, status, scan_limit, owner))

    async def run(self, op: Op[T]) -> T:
        """Send an op built elsewhere (shared.apikeys.KeyOps, ...)."""
        return await self._run(op)

    async def backlog(self, queue: str) -> dict[str, Any]:
        return await self._run(self.ops.backlog(queue))

    async def reserve_version(self, name: str, highest_on_disk: int) -> str:
        """The next version of model `name`, for a training job; never handed out twice."""
        return await self._run(self.ops.reserve_version(name, highest_on_disk))

    async def take_training_slot(self, job_id: str, slots: int, hold_seconds: float) -> bool:
        """One of the TRAINING_MAX_QUEUED_JOBS slots, atomically; False when all are held."""
        return await self._run(self.ops.take_training_slot(job_id, slots, hold_seconds))

    async def release_training_slot(self, job_id: str) -> bool:
        return await self._run(self.ops.release_training_slot(job_id))

    async def queue_length(self, queue: str) -> int:
        return await self._run(self.ops.queue_length(queue))

    async def workers(self) -> list[WorkerInfo]:
        return await self._run(self.ops.workers())

    async def ping(self) -> bool:
        return await self._run(self.ops.ping())

    async def full(self) -> bool:
        return await self._run(self.ops.full())

    async def close(self) -> None:
        await self._redis.aclose()

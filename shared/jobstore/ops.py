"""Every job-store operation, once: what to send to Redis and how to read the reply.

An `Op` is one round trip (a plain command or one of the Lua scripts in lua/) plus the
function that turns the reply into Python values. `JobStore` (worker, redis-py) and
`AsyncJobStore` (API, redis.asyncio) only send ops, so they cannot disagree.
"""

import json
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from celery import Celery

from shared.broker.envelopes import webhook_messages
from shared.broker.layout import UNACKED_HASH
from shared.jobstore.records import (
    JOB_FIELDS,
    WEBHOOK_FIELDS,
    Keyspace,
    NewJob,
    as_fields,
    read_job,
    split_events,
)
from shared.jobstore.replies import Cancelled, Created, Lost, Op, Replay, Started
from shared.schemas import (
    Batch,
    ErrorCode,
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

_EXPIRED = JobError(code=ErrorCode.expired, message="the job's deadline (expires_in) passed before it ran")
_LOST = JobError(code=ErrorCode.worker_lost,
                 message="the job's worker, or its message, was lost while it ran; submit it again")


class JobOps:
    """Builds every operation; holds the keyspace and retention, never a connection."""

    def __init__(self, keys: Keyspace, ttl_seconds: int, cache_ttl_seconds: int = 0,
                 finished_ttl_seconds: int | None = None):
        """`ttl_seconds`: how long a record lives unfinished; `finished_ttl_seconds` (default
        the same): how long a finished one is kept, compacted, and the listing's window."""
        self.keys, self.ttl, self.cache_ttl = keys, ttl_seconds, cache_ttl_seconds
        self.finished_ttl = finished_ttl_seconds or ttl_seconds

    def create(self, new: NewJob, queue: str, max_queued: int = 0, max_active: int = 0) -> Op[Created]:
        """Record the job and push its message, atomically, by Redis' clock; an
        Idempotency-Key used already (per owner), a backlog at `max_queued`, or an owner with
        `max_active` jobs queued or running, writes nothing."""
        owner = new.fields.get("owner", "")
        idempotency = self.keys.idempotency(f"{owner}:{new.idempotency_key}") if new.idempotency_key else ""
        keys = (self.keys.job(new.id), queue, idempotency, self.keys.index, self.keys.queued(queue), UNACKED_HASH,
                self.keys.owner_index(owner) if owner else "", self.keys.active(owner) if owner else "")
        pairs = [v for item in new.fields.items() for v in item]
        expires_in = "" if new.expires_in is None else repr(new.expires_in)
        args = (self.ttl, new.message, f"{new.id}|{new.fingerprint}", expires_in, new.id, max_queued,
                self.finished_ttl, max_active, *pairs)

        def parse(reply: list) -> Created:
            if reply[0] == "replay":
                return Created(replay=Replay(*reply[1].split("|", 1)))
            if reply[0] == "full":
                return Created(backlog=int(reply[1]))
            if reply[0] == "quota":
                return Created(active=int(reply[1]))
            stamps = {"created_at": reply[1], **({"deadline": reply[2]} if reply[2] else {})}
            if new.fields["status"] != JobStatus.queued:  # a cached result: done at once
                stamps.update(started_at=reply[1], finished_at=reply[1])
            return Created(fields={**new.fields, **stamps})

        return Op(args, parse, "create", keys)

    def get(self, job_id: str, owner: str | None = None) -> Op[Job | None]:
        """The job; None when it is gone, or belongs to another owner than `owner` (None:
        any owner)."""
        names = (*JOB_FIELDS, "owner")

        def parse(values: list[str | None]) -> Job | None:
            return read_job(as_fields(JOB_FIELDS, values[:-1])) if owner is None or values[-1] == owner else None

        return Op(("HMGET", self.keys.job(job_id), *names), parse)

    def webhook_target(self, job_id: str) -> Op[tuple[Job | None, str | None, str | None]]:
        """The job as a receiver will see it, where to send it, and its owner (the API key id
        whose webhook secret signs it; None when auth was off)."""
        names = (*JOB_FIELDS, "webhook_url", "owner")

        def parse(values: list[str | None]) -> tuple[Job | None, str | None, str | None]:
            return read_job(as_fields(JOB_FIELDS, values[:-2])), values[-2], values[-1] or None

        return Op(("HMGET", self.keys.job(job_id), *names), parse)

    def start(self, job_ids: list[str], run: str, lease_seconds: float, max_runs: int) -> Op[list[Started]]:
        """Lease runnable jobs to `run` (see lua/start.lua)."""
        args = (_EXPIRED.model_dump_json(), _LOST.model_dump_json(), self.keys.finished_channel,
                self.keys.queued_prefix, self.keys.running, self.keys.job_prefix, max_runs, run, lease_seconds,
                self.finished_ttl, self.keys.active_prefix)

        def parse(rows: list[list[str]]) -> list[Started]:
            return [Started(JobStatus(before) if before else None, verdict == "run",
                            ErrorCode.worker_lost if verdict == "lost" else ErrorCode.expired if verdict == "expired"
                            else None, split_events(events), job_input or None)
                    for before, verdict, events, job_input in rows]

        return Op(args, parse, "start", tuple(self.keys.job(j) for j in job_ids))

    def finish(self, outcomes: Mapping[str, Prediction | TrainingResult | JobError], run: str) -> Op[list[str]]:
        """Terminal outcomes of one run's jobs; the reply is every id this run finished,
        also when the call is a retry (see lua/finish.lua)."""
        statuses = [JobStatus.failed if isinstance(o, JobError) else JobStatus.succeeded for o in outcomes.values()]
        args = (self.keys.finished_channel, self.cache_ttl, self.keys.job_prefix, self.keys.running, run,
                self.finished_ttl, self.keys.active_prefix, *statuses,
                *(o.model_dump_json() for o in outcomes.values()))
        return Op(args, list, "finish", tuple(self.keys.job(j) for j in outcomes))

    def renew(self, job_ids: list[str], run: str, lease_seconds: float) -> Op[int]:
        """Extend the leases of jobs `run` still runs (see lua/renew.lua)."""
        args = (self.keys.running, self.keys.job_prefix, run, lease_seconds)
        return Op(args, int, "renew", tuple(self.keys.job(j) for j in job_ids))

    def progress(self, job_id: str, run: str, progress: TrainingProgress) -> Op[bool]:
        """A training job's progress, written by the run that holds it (see lua/progress.lua)."""
        return Op((run, progress.model_dump_json()), bool, "progress", (self.keys.job(job_id),))

    def reserve_version(self, name: str, highest_on_disk: int) -> Op[str]:
        """The next version of model `name` for a training job (see lua/reserve_version.lua)."""
        return Op((name, highest_on_disk), lambda reply: str(int(reply)), "reserve_version",
                  (self.keys.model_versions,))

    def sweep_lost(self, grace_seconds: float, limit: int) -> Op[dict[str, list[WebhookEvent]]]:
        """Fail running jobs nobody took over long after their lease ended (see
        lua/sweep_lost.lua); the reply maps each to its webhook events."""
        args = (grace_seconds, _LOST.model_dump_json(), self.keys.finished_channel, self.keys.job_prefix, limit,
                self.finished_ttl, self.keys.active_prefix)

        def parse(rows: list[list[str]]) -> dict[str, list[WebhookEvent]]:
            return {job_id: split_events(events) for job_id, events in rows}

        return Op(args, parse, "sweep_lost", (self.keys.running,))

    def cancel(self, job_id: str, owner: str | None = None) -> Op[Cancelled]:
        """Cancel the job if queued; another owner's job (unless `owner` is None) is gone."""
        names = (*JOB_FIELDS, *WEBHOOK_FIELDS)

        def parse(reply: list) -> Cancelled:
            if not reply[0]:
                return Cancelled(None, None, [])
            before, fields = reply[0], as_fields(names, reply[1])
            events = split_events(fields.get("webhook_events")) if fields.get("webhook_url") else []
            return Cancelled(JobStatus(before) if before else None, read_job(fields), events)

        args = (self.keys.finished_channel, job_id, self.keys.queued_prefix, self.finished_ttl,
                self.keys.active_prefix, owner or "", *names)
        return Op(args, parse, "cancel", (self.keys.job(job_id),))

    def record_webhook_attempt(self, job_id: str, state: WebhookState) -> Op[int]:
        """Count one more attempt and store its outcome (see lua/webhook_attempt.lua)."""
        return Op((state.model_dump_json(),), int, "webhook_attempt", (self.keys.job(job_id),))

    def find_lost(self, queue: str, older_than: float, limit: int) -> Op[list[Lost]]:
        """Queued jobs whose message Redis lost in delivery (see lua/rescue.lua)."""
        now = time.time()
        keys = (self.keys.queued(queue), queue, UNACKED_HASH)

        def parse(rows: list[list[str]]) -> list[Lost]:
            return [Lost(job_id, f"{name}:{version}", float(created)) for job_id, name, version, created in rows]

        return Op((repr(now - older_than), repr(now), limit, self.keys.job_prefix), parse, "rescue", keys)

    def requeue(self, queue: str, messages: dict[str, tuple[str, str]]) -> Op[int]:
        """Put back new messages (job id -> (delivery tag, message)) for jobs still queued."""
        keys = (queue, *(self.keys.job(job_id) for job_id in messages))
        return Op(tuple(v for pair in messages.values() for v in pair), int, "requeue", keys)

    def recent(self, limit: int, before: float | None, status: JobStatus | None,
               scan_limit: int, owner: str | None = None) -> Op[tuple[list[Job], float | None]]:
        """Newest first, created before `before`, examining at most scan_limit entries;
        `owner`'s jobs only, unless None (every job)."""
        high = f"({before!r}" if before is not None else "+inf"
        args = (self.keys.job_prefix, high, limit, scan_limit, status.value if status else "", *JOB_FIELDS)

        def parse(reply: list) -> tuple[list[Job], float | None]:
            jobs = [read_job(as_fields(JOB_FIELDS, values)) for values in reply[1:]]
            return [job for job in jobs if job], float(reply[0]) if reply[0] else None

        return Op(args, parse, "recent", (self.keys.owner_index(owner) if owner else self.keys.index,))

    def create_batch(self, batch_id: str, job_ids: list[str], owner: str | None,
                     webhook: tuple[str, str, str] | None = None) -> Op[int]:
        """Record a batch's jobs, in order, for as long as any of them can live (unfinished, then
        finished); `webhook`: (its URL, the webhook queue, the delivery's task message), queued
        once every job has ended (see lua/batch_create.lua)."""
        url, queue, message = webhook or ("", "", "")
        record = json.dumps({"owner": owner or "", "created_at": time.time(), "jobs": job_ids, "webhook_url": url})
        keys = (self.keys.batch(batch_id), self.keys.batch_hook(batch_id) if webhook else "")
        args = (record, self.ttl + self.finished_ttl, self.keys.job_prefix, queue, message, *job_ids)
        return Op(args, int, "batch_create", keys)

    def batch_target(self, batch_id: str) -> Op[tuple[str, str | None] | None]:
        """(its webhook URL, its owner) for the batch's delivery; None when it is gone."""

        def parse(raw: str | None) -> tuple[str, str | None] | None:
            if raw is None:
                return None
            record = json.loads(raw)
            return record.get("webhook_url", ""), record["owner"] or None

        return Op(("GET", self.keys.batch(batch_id)), parse)

    def batch(self, batch_id: str, offset: int, limit: int, owner: str | None = None) -> Op[Batch | None]:
        """The batch with its counts and a page of its jobs; None when it is gone or (with
        `owner`) another owner's (see lua/batch.lua)."""
        args = (owner or "", self.keys.job_prefix, offset, limit, *JOB_FIELDS)

        def parse(reply: list | None) -> Batch | None:
            if not reply:
                return None
            raw, statuses, page = reply
            record = json.loads(raw)
            counts = dict.fromkeys(JobStatus, 0)
            for value in statuses:
                if value:
                    counts[JobStatus(value)] += 1
            jobs = [job for job in (read_job(as_fields(JOB_FIELDS, values)) for values in page) if job]
            following = offset + limit
            return Batch(id=batch_id, created_at=datetime.fromtimestamp(record["created_at"], UTC),
                         total=len(statuses), counts=counts,
                         done=all(not value or JobStatus(value).terminal for value in statuses),
                         jobs=jobs, next_offset=following if following < len(statuses) else None)

        return Op(args, parse, "batch", (self.keys.batch(batch_id),))

    def cached_result(self, cache_key: str) -> Op[str | None]:
        return Op(("GET", cache_key), lambda value: value)

    def queue_length(self, queue: str) -> Op[int]:
        """Messages waiting in a queue (not those delivered)."""
        return Op(("LLEN", queue), int)

    def push(self, queue: str, messages: list[str]) -> Op[int]:
        return Op(("LPUSH", queue, *messages), int)

    def notify(self, app: Celery, queue: str, hooks: Iterable[tuple[str, WebhookEvent]]) -> Op[int]:
        """Queue webhook deliveries, one per (job id, event), for the webhook worker."""
        return self.push(queue, webhook_messages(app, queue, hooks))

    def backlog(self, queue: str) -> Op[dict[str, int]]:
        """Jobs waiting in the queue, and delivered but not yet acknowledged."""

        def parse(reply: list[int]) -> dict[str, int]:
            queued, in_flight = reply
            return {"queued": queued, "in_flight": in_flight, "total": queued + in_flight}

        return Op((), parse, "backlog", (queue, UNACKED_HASH))

    def heartbeat(self, hostname: str, ttl: int, serves: Serves) -> Op[Any]:
        keys = (self.keys.workers, self.keys.worker_models)
        return Op((hostname, ttl, serves.model_dump_json()), lambda reply: reply, "heartbeat", keys)

    def forget_worker(self, hostname: str) -> Op[Any]:
        return Op(("ZREM", self.keys.workers, hostname), lambda reply: reply)

    def workers(self) -> Op[list[WorkerInfo]]:
        """Workers whose heartbeat is current, by name, with what each serves."""

        def parse(reply: list[str]) -> list[WorkerInfo]:
            pairs = zip(reply[::2], reply[1::2], strict=True)
            return sorted((WorkerInfo(name=name, **(json.loads(serves) if serves else {})) for name, serves in pairs),
                          key=lambda worker: worker.name)

        return Op((), parse, "workers", (self.keys.workers, self.keys.worker_models))

    def ping(self) -> Op[bool]:
        return Op(("PING",), bool)

    def full(self) -> Op[bool]:
        """Redis is at its maxmemory: writes that add data are refused (noeviction)."""

        def parse(info: dict[str, Any]) -> bool:
            return bool(info.get("maxmemory")) and info["used_memory"] >= info["maxmemory"]

        return Op(("INFO", "memory"), parse)

    def schedule_webhook_retry(self, queue: str, job_id: str, message: str, delay: float, keep: float,
                               batch: bool = False) -> Op[bool]:
        """Put a delivery's task message in Redis' retry schedule (see lua/webhook_retry.lua);
        False when the job's (with `batch`, the batch's) record is gone."""
        keys = (self.keys.webhook_retries(queue), self.keys.batch(job_id) if batch else self.keys.job(job_id))
        return Op((repr(delay), repr(keep), message), bool, "webhook_retry", keys)

    def move_due_webhooks(self, queue: str, limit: int) -> Op[int]:
        """Move retries that are due onto the webhook queue (see lua/webhook_due.lua)."""
        return Op((limit,), int, "webhook_due", (self.keys.webhook_retries(queue), queue))

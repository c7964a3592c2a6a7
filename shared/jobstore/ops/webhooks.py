"""Batches and webhooks: a batch's record and its one delivery, what a delivery sends and to
whom, the retry schedule, and what bounds the attempts of one key (its attempts under way,
its receivers' circuit breakers)."""

import json
import time
from datetime import UTC, datetime

from shared.broker.layout import DOORBELL
from shared.jobstore.ops.base import OpsBase, args
from shared.jobstore.records import JOB_FIELDS, as_fields, read_job
from shared.jobstore.replies import Op
from shared.schemas import Batch, Job, JobStatus, WebhookState


class WebhookOps(OpsBase):
    def webhook_target(self, job_id: str) -> Op[tuple[Job | None, str | None, str | None]]:
        """The job as a receiver will see it, where to send it, and its owner (the API key id
        whose webhook secret signs it; None when auth was off)."""
        names = (*JOB_FIELDS, "webhook_url", "owner")

        def parse(values: list[str | None]) -> tuple[Job | None, str | None, str | None]:
            return read_job(as_fields(JOB_FIELDS, values[:-2])), values[-2], values[-1] or None

        return Op(("HMGET", self.keys.job(job_id), *names), parse)

    def record_webhook_attempt(self, job_id: str, state: WebhookState, count: bool = True) -> Op[int]:
        """Count one more attempt (unless not `count`) and store its outcome (see
        lua/webhook_attempt.lua)."""
        return Op((state.model_dump_json(), int(count)), int, "webhook_attempt", (self.keys.job(job_id),))

    def create_batch(self, batch_id: str, job_ids: list[str], owner: str | None,
                     webhook: tuple[str, str, str] | None = None) -> Op[int]:
        """Record a batch's jobs, in order, for as long as any of them can live (unfinished, then
        finished); `webhook`: (its URL, the webhook queue, the delivery's task message), queued
        once every job has ended (see lua/batch_create.lua)."""
        url, queue, message = webhook or ("", "", "")
        record = json.dumps({"owner": owner or "", "created_at": time.time(), "jobs": job_ids, "webhook_url": url})
        keys = (self.keys.batch(batch_id), self.keys.batch_hook(batch_id) if webhook else self.keys.absent,
                self._or_absent(queue), self.keys.active(owner) if owner else self.keys.absent,
                *(self.keys.job(job_id) for job_id in job_ids))
        member = f"batch:{batch_id}" if owner else ""  # its place in the owner's record budget
        return Op((record, self.ttl + self.finished_ttl, message, member), int, "batch_create", keys)

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
        `owner`) another owner's. Its record is read first (for its job ids), then its jobs'
        records (see lua/batch.lua)."""

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

        def jobs(raw: str | None) -> Batch | Op[Batch | None] | None:
            if raw is None or (owner and json.loads(raw)["owner"] != owner):
                return None
            keys = (self.keys.batch(batch_id), *(self.keys.job(job_id) for job_id in json.loads(raw)["jobs"]))
            return Op((offset, limit, *JOB_FIELDS), parse, "batch", keys)

        return Op(("GET", self.keys.batch(batch_id)), jobs)

    def push(self, queue: str, messages: list[str]) -> Op[int]:
        return Op(("LPUSH", queue, *messages), int)

    def schedule_webhook_retry(self, queue: str, job_id: str, message: str, delay: float, keep: float,
                               cap: float, batch: bool = False, owner: str | None = None) -> Op[int]:
        """Put a delivery's task message in Redis' retry schedule (see lua/webhook_retry.lua):
        1, or 0 when the job's (with `batch`, the batch's) record is gone, or -1 when it would
        be due more than `cap` seconds after the job finished. `owner`: whose record budget
        counts the record as long as the retry keeps it."""
        keys = (self.keys.webhook_retries(queue), self.keys.batch(job_id) if batch else self.keys.job(job_id),
                self.keys.active(owner) if owner else self.keys.absent)
        member = (f"batch:{job_id}" if batch else job_id) if owner else ""
        return Op(args(delay=delay, grace=keep, cap=cap, message=message, member=member), int, "webhook_retry", keys)

    def move_due_webhooks(self, queue: str, limit: int) -> Op[int]:
        """Move retries that are due onto the webhook queue (see lua/webhook_due.lua)."""
        keys = (self.keys.webhook_retries(queue), *self.webhook_keys(queue, "low"))
        return Op((limit, DOORBELL), int, "webhook_due", keys)

    def webhook_gate(self, owner: str | None, receiver: str, token: str, lease: float, max_in_flight: int,
                     cooldown: float) -> Op[tuple[str, float]]:
        """Whether an attempt of `owner`'s to `receiver` (host:port) may start: ('go', 0), or
        ('busy' | 'open', seconds to wait) (see lua/webhook_gate.lua)."""
        keys = (self.keys.webhook_in_flight(owner), self.keys.webhook_breaker(owner, receiver))
        script_args = args(token=token, lease=lease, max=max_in_flight, cooldown=cooldown)
        return Op(script_args, lambda reply: (str(reply[0]), float(reply[1])), "webhook_gate", keys)

    def webhook_done(self, owner: str | None, receiver: str, token: str, failed: bool, failures: int,
                     cooldown: float, window: float) -> Op[int]:
        """An attempt let through by webhook_gate ended; the receiver's failures in a row
        after it (see lua/webhook_done.lua)."""
        keys = (self.keys.webhook_in_flight(owner), self.keys.webhook_breaker(owner, receiver))
        script_args = args(token=token, failed=failed, failures=failures, cooldown=cooldown, window=window)
        return Op(script_args, int, "webhook_done", keys)

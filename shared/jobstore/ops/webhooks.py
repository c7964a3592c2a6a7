"""Batches and webhooks: a batch's record and its one delivery, what a delivery sends and to
whom, the retry schedule, and pushing deliveries onto their queue."""

import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from celery import Celery

from shared.broker.envelopes import webhook_messages
from shared.jobstore.ops.base import OpsBase
from shared.jobstore.records import JOB_FIELDS, as_fields, read_job
from shared.jobstore.replies import Op
from shared.schemas import Batch, Job, JobStatus, WebhookEvent, WebhookState


class WebhookOps(OpsBase):
    def webhook_target(self, job_id: str) -> Op[tuple[Job | None, str | None, str | None]]:
        """The job as a receiver will see it, where to send it, and its owner (the API key id
        whose webhook secret signs it; None when auth was off)."""
        names = (*JOB_FIELDS, "webhook_url", "owner")

        def parse(values: list[str | None]) -> tuple[Job | None, str | None, str | None]:
            return read_job(as_fields(JOB_FIELDS, values[:-2])), values[-2], values[-1] or None

        return Op(("HMGET", self.keys.job(job_id), *names), parse)

    def record_webhook_attempt(self, job_id: str, state: WebhookState) -> Op[int]:
        """Count one more attempt and store its outcome (see lua/webhook_attempt.lua)."""
        return Op((state.model_dump_json(),), int, "webhook_attempt", (self.keys.job(job_id),))

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

    def notify(self, app: Celery, queue: str, hooks: Iterable[tuple[str, WebhookEvent]]) -> Op[int]:
        """Queue webhook deliveries, one per (job id, event), for the webhook worker."""
        return self.push(queue, webhook_messages(app, queue, hooks))

    def schedule_webhook_retry(self, queue: str, job_id: str, message: str, delay: float, keep: float,
                               batch: bool = False, owner: str | None = None) -> Op[bool]:
        """Put a delivery's task message in Redis' retry schedule (see lua/webhook_retry.lua);
        False when the job's (with `batch`, the batch's) record is gone. `owner`: whose record
        budget counts the record as long as the retry keeps it."""
        keys = (self.keys.webhook_retries(queue), self.keys.batch(job_id) if batch else self.keys.job(job_id),
                self.keys.active(owner) if owner else self.keys.absent)
        member = (f"batch:{job_id}" if batch else job_id) if owner else ""
        return Op((repr(delay), repr(keep), message, member), bool, "webhook_retry", keys)

    def move_due_webhooks(self, queue: str, limit: int) -> Op[int]:
        """Move retries that are due onto the webhook queue (see lua/webhook_due.lua)."""
        return Op((limit,), int, "webhook_due", (self.keys.webhook_retries(queue), queue))

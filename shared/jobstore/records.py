"""How a job's record is laid out in Redis: its field names, and the record hash <-> `Job`
(the key names are in shared.jobstore.keys).

Everything that knows a record field name lives here, so a change of layout is a change of
this module.
"""

import json
import uuid
from datetime import UTC, datetime
from typing import NamedTuple

from shared.registry import Manifest
from shared.schemas import Job, JobStatus, ModelRef, Priority, TrainingProgress, WebhookEvent, WebhookState

# The record fields a `Job` is read from. 'status' comes first: recent.lua filters on it.
JOB_FIELDS = (
    "status", "id", "model_name", "model_version", "result", "error", "cached",
    "created_at", "started_at", "finished_at", "deadline", "webhook", "kind", "progress", "priority",
)
# Where a job's webhook goes and for which events (not part of the public record).
WEBHOOK_FIELDS = ("webhook_url", "webhook_events")
# The record fields that name other keys a transition touches: its Celery queue (hence its
# queued set), its owner (active set), its batch's webhook hash and that webhook's queue, its
# result cache entry. A caller reads them before the script (which must be given every key);
# they change only when batch_create adds the batch, and when an end drops queue and cache
# key. In this order in lua/_routes.lua's ROUTES.
ROUTE_FIELDS = ("queue", "owner", "batch", "batch_queue", "cache_key")


# What new_job_id makes (a batch's id too): a route checks an id against it before it
# becomes part of a key, so `X:hook` cannot name batch X's hook (Keyspace.batch_hook).
BATCH_ID = r"\A[0-9a-f]{32}\Z"


def new_job_id() -> str:
    return uuid.uuid4().hex


class NewJob(NamedTuple):
    """What a submission records: the record's fields and, unless nothing is to run (a
    cached result), the task message to enqueue with it."""

    fields: dict[str, str]
    message: str = ""
    idempotency_key: str | None = None  # the client's Idempotency-Key
    fingerprint: str = ""  # of the request, to tell a replay from a reuse of the key
    expires_in: float | None = None  # the deadline, from creation (stamped by Redis' clock)
    lane: str = "normal"  # shared.schemas.Priority: which of the queue's lanes the message waits in
    weight: int = 1  # the owner's fair-share weight (its key's `weight`)
    fair_owner: str | None = None  # whose turn in the lane it waits for; None: the record's owner

    @property
    def id(self) -> str:
        return self.fields["id"]


def new_record(
    manifest: Manifest | ModelRef,
    job_id: str,
    *,
    webhook_url: str | None = None,
    webhook_events: list[WebhookEvent] | None = None,
    cache_key: str | None = None,
    cached_result: str | None = None,
    input: str | None = None,
    tag: str | None = None,
    owner: str | None = None,
    kind: str | None = None,
    priority: Priority | None = None,
) -> dict[str, str]:
    """A new record's fields; create.lua stamps its times (created_at, deadline, and for a
    cached result started_at and finished_at) with Redis' clock. `input`: the job's encoded
    pixels, stored here only (the task message names the job); `tag`: its message's delivery
    tag. Both go once the job has finished (finish.lua compacts the record). `kind`:
    "training" for a training job (absent: inference). `priority`: its lane (absent: normal,
    as for records written before lanes)."""
    fields = {
        "id": job_id,
        "status": JobStatus.queued.value,
        "model_name": manifest.name,
        "model_version": manifest.version,
    }
    if webhook_url:
        fields["webhook_url"] = webhook_url
        fields["webhook_events"] = join_events(webhook_events or [WebhookEvent.completed])
        fields["webhook"] = WebhookState().model_dump_json()
    if cache_key:
        fields["cache_key"] = cache_key
    if kind:
        fields["kind"] = kind
    if owner:
        fields["owner"] = owner  # the API key id that submitted it
    if priority is not None:
        fields["priority"] = priority.value
    if input is not None:
        fields["input"] = input
    if tag is not None:
        fields["tag"] = tag
    if cached_result is not None:
        fields.update(status=JobStatus.succeeded.value, result=cached_result, cached="1")
    return fields


def join_events(events: list[WebhookEvent]) -> str:
    return ",".join(events)


def split_events(value: str | None) -> list[WebhookEvent]:
    """The stored webhook events ('' or None: none)."""
    return [WebhookEvent(event) for event in value.split(",")] if value else []


def as_fields(names: tuple[str, ...], values: list[str | None]) -> dict[str, str]:
    """An HMGET reply as a dict of the fields present."""
    return {name: value for name, value in zip(names, values, strict=True) if value is not None}


def read_job(fields: dict[str, str]) -> Job | None:
    """The record read back from Redis as a `Job`; None when the record is gone."""
    return to_job(fields) if "id" in fields else None


def to_job(fields: dict[str, str]) -> Job:
    """The record as a client sees it (a training job's stored result is its `training`)."""
    training = fields.get("kind") == "training"
    result = json.loads(fields["result"]) if fields.get("result") else None
    return Job(
        id=fields["id"],
        kind="training" if training else "inference",
        status=JobStatus(fields["status"]),
        model=ModelRef(name=fields["model_name"], version=fields["model_version"]),
        result=None if training else result,
        training=result if training else None,
        error=json.loads(fields["error"]) if fields.get("error") else None,
        cached=bool(fields.get("cached")),
        created_at=datetime.fromtimestamp(float(fields["created_at"]), tz=UTC),
        started_at=_when(fields.get("started_at")),
        finished_at=_when(fields.get("finished_at")),
        expires_at=_when(fields.get("deadline")),
        webhook=json.loads(fields["webhook"]) if fields.get("webhook") else None,
        progress=TrainingProgress.model_validate_json(fields["progress"]) if fields.get("progress") else None,
        priority=Priority(fields.get("priority") or Priority.normal),
    )


def _when(value: str | None) -> datetime | None:
    return datetime.fromtimestamp(float(value), tz=UTC) if value else None

"""Task messages exactly as kombu's Redis transport stores them, so a message can be written
in the same Redis round trip as its job's record (the API's create, the rescue's requeue,
the webhook pushes)."""

import base64
import json
import uuid
from typing import NamedTuple

from celery import Celery

from shared.broker.layout import DELIVER_BATCH_TASK, DELIVER_TASK, INFER_TASK, TRAIN_TASK


def redis_message(app: Celery, queue: str, task_id: str, args: list, task: str = INFER_TASK,
                  delivery_tag: str | None = None, extra_properties: dict | None = None) -> str:
    """The Celery task message exactly as kombu's Redis transport stores it in the queue list.

    Celery builds the message (protocol 2 headers, properties, body); only kombu's Redis
    envelope is assembled here, so the API can write the job record and its message in one
    MULTI/EXEC round trip (no record without a message, none of the producer's per-call
    overhead). tests/shared/test_broker.py pins this against what kombu itself writes.
    """
    message = app.amqp.as_task_v2(task_id, task, args=args, kwargs={}, argsrepr=f"[{task_id!r}, ...]")
    body = base64.b64encode(json.dumps(message.body).encode()).decode("ascii")
    properties = {
        **message.properties,
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": queue},
        "priority": 0,
        "body_encoding": "base64",
        "delivery_tag": delivery_tag or str(uuid.uuid4()),
        **(extra_properties or {}),
    }
    return json.dumps({
        "body": body,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": message.headers,
        "properties": properties,
    })


class InferMessage(NamedTuple):
    tag: str  # kombu's delivery tag: the job's record keeps it (see jobstore/lua/rescue.lua)
    message: str


def infer_message(app: Celery, queue: str, job_id: str, model_key: str, submitted_at: float, *,
                  lane: str = "normal", owner: str = "") -> InferMessage:
    """The inference task's message for one job. It names the job only: the job's input is
    stored once, in the job's record, and the worker gets it when it starts the job. Its
    lane and owner say where a restore puts it back (shared/broker/fair.py)."""
    tag = str(uuid.uuid4())
    return InferMessage(tag, redis_message(app, queue, job_id, [job_id, model_key, submitted_at], delivery_tag=tag,
                                           extra_properties={"qi_lane": lane, "qi_owner": owner}))


def training_message(app: Celery, queue: str, job_id: str) -> InferMessage:
    """The training task's message: it names the job; the archive and the request's choices
    are in the job's record (`input`), handed to the worker when it starts the job."""
    tag = str(uuid.uuid4())
    return InferMessage(tag, redis_message(app, queue, job_id, [job_id], task=TRAIN_TASK, delivery_tag=tag))


# The webhook queue is a fair queue with one lane and one owner (shared/broker/fair.py): a
# worker's BRPOP takes only its doorbell, so no delivery is ever out of Redis unrecorded. Its
# messages say where a restore puts them back.
WEBHOOK_LANE, WEBHOOK_MEMBER = "normal", "-"
_WEBHOOK_PLACE = {"qi_lane": WEBHOOK_LANE, "qi_owner": WEBHOOK_MEMBER}
JOB_PLACEHOLDER = "@@job@@"  # in a template, replaced by the job id (lua/_hooks.lua)


def webhook_message(app: Celery, queue: str, job_id: str, event: str, attempt: int = 1, deferred: int = 0) -> str:
    """The message asking the webhook worker to deliver one event of one job (attempt n,
    deferred `deferred` times already: worker/webhooks/gate.py)."""
    if attempt == 1 and not deferred:
        return redis_message(app, queue, f"{job_id}-{event}", [job_id, event], task=DELIVER_TASK,
                             extra_properties=_WEBHOOK_PLACE)
    return redis_message(app, queue, f"{job_id}-{event}-{attempt}-{deferred}", [job_id, event, attempt, deferred],
                         task=DELIVER_TASK, extra_properties=_WEBHOOK_PLACE)


def webhook_template(app: Celery, queue: str, event: str) -> str:
    """A job's first `event` delivery message with JOB_PLACEHOLDER for the job id, for the
    scripts that end or start jobs to fill in (lua/_hooks.lua). Its body is left as plain
    JSON (kombu decodes a message without body_encoding as is), so that the id can be
    substituted; its delivery tag is '<job id>-<event>': each job's event is queued once."""
    name = f"{JOB_PLACEHOLDER}-{event}"
    envelope = json.loads(redis_message(app, queue, name, [JOB_PLACEHOLDER, event], task=DELIVER_TASK,
                                        delivery_tag=name, extra_properties=_WEBHOOK_PLACE))
    envelope["body"] = base64.b64decode(envelope["body"]).decode()
    del envelope["properties"]["body_encoding"]
    return json.dumps(envelope)


class WebhookHooks(NamedTuple):
    """What the scripts that change a job's status need to queue its webhook deliveries in
    the same call: the webhook queue and one template per event."""

    queue: str
    completed: str
    running: str


def webhook_hooks(app: Celery, queue: str) -> WebhookHooks:
    """Built once per process: the templates depend on the queue only."""
    return WebhookHooks(queue, webhook_template(app, queue, "completed"), webhook_template(app, queue, "running"))


def batch_webhook_message(app: Celery, queue: str, batch_id: str, attempt: int = 1, deferred: int = 0) -> str:
    """The message asking the webhook worker to deliver a batch's one event (attempt n,
    deferred `deferred` times already)."""
    return redis_message(app, queue, f"{batch_id}-batch-{attempt}-{deferred}", [batch_id, attempt, deferred],
                         task=DELIVER_BATCH_TASK,
                         extra_properties=_WEBHOOK_PLACE)

"""What the API (producer) and the worker (consumer) must agree on about the Celery queue."""

import base64
import json
import uuid
from typing import NamedTuple

import numpy as np
from celery import Celery

from shared.settings import Settings
from shared.webhooks import DELIVER_BATCH_TASK, DELIVER_TASK

INFER_TASK = "worker.infer"
TRAIN_TASK = "worker.train"  # worker/training.py, on TRAINING_QUEUE


def celery_config(settings: Settings) -> dict:
    visibility = settings.visibility_timeout_seconds
    return {
        "broker_url": settings.redis_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            # An unacknowledged message (its worker died) is delivered again after this long.
            "visibility_timeout": visibility,
            # Sweep for such messages often enough that the timeout, not the sweep, decides.
            "unacked_restore_interval": max(1, min(10, visibility // 10)),
            "unacked_restore_throttle": 1,
            "socket_timeout": settings.redis_timeout_seconds,
            "socket_connect_timeout": settings.redis_timeout_seconds,
        },
        # Fail a publish fast when Redis is down: the API answers 503 instead of hanging.
        "task_publish_retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.2},
        "task_default_queue": settings.queue_name,
        "task_serializer": "json",
        "accept_content": ["json"],
        # Job state lives in our job store; Celery keeps no results.
        "task_ignore_result": True,
        "result_backend": None,
        # Acknowledge only after the batch ran, so a killed worker's jobs are redelivered.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Enough to fill the batches in flight, never the whole queue (the backlog stays
        # visible to other workers and to the autoscaler).
        "worker_prefetch_multiplier": settings.max_batch_size * settings.prefetch_batches,
        "worker_hijack_root_logger": False,
    }


def make_celery(settings: Settings, name: str) -> Celery:
    app = Celery(name)
    app.conf.update(celery_config(settings))
    return app


def redis_message(app: Celery, queue: str, task_id: str, args: list, task: str = INFER_TASK,
                  delivery_tag: str | None = None) -> str:
    """The Celery task message exactly as kombu's Redis transport stores it in the queue list.

    Celery builds the message (protocol 2 headers, properties, body); only kombu's Redis
    envelope is assembled here, so the API can write the job record and its message in one
    MULTI/EXEC round trip (no record without a message, none of the producer's per-call
    overhead). tests/shared/test_queue.py pins this against what kombu itself writes.
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


def infer_message(app: Celery, queue: str, job_id: str, model_key: str, submitted_at: float) -> InferMessage:
    """The inference task's message for one job. It names the job only: the job's input is
    stored once, in the job's record, and the worker gets it when it starts the job."""
    tag = str(uuid.uuid4())
    return InferMessage(tag, redis_message(app, queue, job_id, [job_id, model_key, submitted_at], delivery_tag=tag))


def training_message(app: Celery, queue: str, job_id: str) -> InferMessage:
    """The training task's message: it names the job; the archive and the request's choices
    are in the job's record (`input`), handed to the worker when it starts the job."""
    tag = str(uuid.uuid4())
    return InferMessage(tag, redis_message(app, queue, job_id, [job_id], task=TRAIN_TASK, delivery_tag=tag))


def webhook_message(app: Celery, queue: str, job_id: str, event: str) -> str:
    """The message asking the webhook worker to deliver one event of one job."""
    return redis_message(app, queue, f"{job_id}-{event}", [job_id, event], task=DELIVER_TASK)


def batch_webhook_message(app: Celery, queue: str, batch_id: str, attempt: int = 1) -> str:
    """The message asking the webhook worker to deliver a batch's one event (attempt n)."""
    return redis_message(app, queue, f"{batch_id}-batch-{attempt}", [batch_id, attempt], task=DELIVER_BATCH_TASK)


def encode_pixels(pixels: np.ndarray) -> str:
    """Preprocessed pixels (0..255) as uint8: a quarter of float32 on the queue and in Redis."""
    quantized = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return base64.b64encode(np.ascontiguousarray(quantized).tobytes()).decode("ascii")


def decode_pixels(payload: str, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of encode_pixels; raises ValueError when the payload does not fit the shape."""
    raw = base64.b64decode(payload, validate=True)
    expected = int(np.prod(shape))
    if len(raw) != expected:
        raise ValueError(f"input has {len(raw)} bytes, model expects {expected} for shape {tuple(shape)}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape)


FEATURE_DTYPE = np.dtype("<f4")  # float32, little-endian: what a features model takes


def encode_features(values: np.ndarray) -> str:
    """A features model's input (finite float32 values, the manifest's order), base64."""
    return base64.b64encode(np.ascontiguousarray(values, dtype=FEATURE_DTYPE).tobytes()).decode("ascii")


def decode_features(payload: str, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of encode_features; raises ValueError when the payload does not fit the shape
    or holds a value that is not finite."""
    raw = base64.b64decode(payload, validate=True)
    expected = int(np.prod(shape)) * FEATURE_DTYPE.itemsize
    if len(raw) != expected:
        raise ValueError(f"input has {len(raw)} bytes, model expects {expected} for {int(np.prod(shape))} features")
    values = np.frombuffer(raw, dtype=FEATURE_DTYPE).reshape(shape).astype(np.float32)
    if not np.isfinite(values).all():
        raise ValueError("input has a value that is not a finite number")
    return values

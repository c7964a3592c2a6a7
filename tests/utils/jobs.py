"""Jobs made directly in the store, as the API makes them, for tests that drive a worker or
the store by hand."""

import time

from shared.broker import InferMessage, infer_message, make_celery
from shared.jobstore import JobStore, Keyspace, NewJob, new_job_id, new_record
from shared.registry import Manifest
from shared.settings import Settings
from tests.utils.samples import DIGITS

_CELERY = make_celery(Settings(), "tests")  # builds messages only; never connects


def task_message(job_id: str, queue: str, manifest: Manifest = DIGITS, lane: str = "normal",
                 owner: str = "") -> InferMessage:
    """The inference task message for a job, as the API writes it, and its delivery tag."""
    return infer_message(_CELERY, queue, job_id, manifest.key, time.time(), lane=lane, owner=owner)


def make_job(store: JobStore, manifest: Manifest = DIGITS, *, queue: str | None = None,
             payload: str = "AA==", fair: bool = True, lane: str = "normal", weight: int = 1,
             **record) -> NewJob:
    """A queued job record with `payload` as its input (encoded pixels); with `queue`, its
    task message is pushed there with it, atomically, exactly as the API does (`fair`: into
    the queue's lanes, as for inference; else into its Celery list, as for training)."""
    job_id = new_job_id()
    owner = record.get("owner") or ""
    tag, message = task_message(job_id, queue, manifest, lane, owner) if queue is not None else (None, "")
    expires_in = record.pop("expires_in", None)
    new = NewJob(new_record(manifest, job_id, input=payload, tag=tag, **record), message, expires_in=expires_in,
                 lane=lane, weight=weight)
    created = store.create(new, queue or "unused", fair=fair)
    assert created.fields is not None, created
    return new._replace(fields=created.fields)


def waiting(client, queue: str = "inference") -> int:
    """Jobs waiting in a fair queue, all lanes (its Celery list holds only a doorbell)."""
    depth = client.hmget(Keyspace().fair_state(queue), "depth:high", "depth:normal", "depth:low")
    return sum(int(d or 0) for d in depth)

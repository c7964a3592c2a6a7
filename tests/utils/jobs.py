"""Jobs made directly in the store, as the API makes them, for tests that drive a worker or
the store by hand."""

import time

from shared.broker import InferMessage, infer_message, make_celery
from shared.jobstore import JobStore, NewJob, new_job_id, new_record
from shared.registry import Manifest
from shared.settings import Settings
from tests.utils.samples import DIGITS

_CELERY = make_celery(Settings(), "tests")  # builds messages only; never connects


def task_message(job_id: str, queue: str, manifest: Manifest = DIGITS) -> InferMessage:
    """The inference task message for a job, as the API writes it, and its delivery tag."""
    return infer_message(_CELERY, queue, job_id, manifest.key, time.time())


def make_job(store: JobStore, manifest: Manifest = DIGITS, *, queue: str | None = None,
             payload: str = "AA==", **record) -> NewJob:
    """A queued job record with `payload` as its input (encoded pixels); with `queue`, its
    task message is pushed there with it, atomically, exactly as the API does."""
    job_id = new_job_id()
    tag, message = task_message(job_id, queue, manifest) if queue is not None else (None, "")
    expires_in = record.pop("expires_in", None)
    new = NewJob(new_record(manifest, job_id, input=payload, tag=tag, **record), message, expires_in=expires_in)
    created = store.create(new, queue or "unused")
    assert created.fields is not None, created
    return new._replace(fields=created.fields)

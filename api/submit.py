"""One submission, whichever route it came by: reuse a cached result or an idempotent
earlier job, else preprocess and record + enqueue atomically."""

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
from fastapi import HTTPException, status

from api.auth import Caller, over_quota
from api.decoding import INLINE_PIXELS
from api.errors import reject
from api.metrics import SUBMITTED
from api.services import Services
from api.uploads import open_upload, resolve_model, takes, upload_pixels
from shared.broker import infer_message
from shared.codec import FEATURE_DTYPE, encode_features, encode_pixels
from shared.jobstore import NewJob, Replay, new_job_id, new_record, to_job
from shared.schemas import Job, WebhookEvent

QUEUE_FULL_RETRY_AFTER_SECONDS = 5


@dataclass
class SubmitOptions:
    """What a submission asks for besides its image (checked by api.deps.submit_options)."""

    model: str | None = None
    webhook_url: str | None = None
    webhook_events: list[WebhookEvent] = field(default_factory=lambda: [WebhookEvent.completed])
    expires_in: float | None = None


async def submit(data: bytes | np.ndarray, options: SubmitOptions, svc: Services, caller: Caller,
                 idempotency_key: str | None = None) -> tuple[Job, bool]:
    """(the job, whether this call created it), owned by the caller's key. `data`: an
    image's bytes, or a features model's checked values (api.features.feature_vector)."""
    settings, store = svc.settings, svc.store
    manifest = resolve_model(svc.registry, options.model)
    if isinstance(data, np.ndarray):  # the same numbers, however sent, are the same input
        features = np.ascontiguousarray(data, dtype=FEATURE_DTYPE)
        digest = hashlib.sha256(b"features:" + features.tobytes()).hexdigest()
    else:
        takes(manifest, "image")
        digest = hashlib.sha256(data).hexdigest()
    cache_key = store.keys.cache(caller.key_id, manifest.key, digest) if settings.result_cache_ttl_seconds else None
    job_id = new_job_id()
    cached = await store.cached_result(cache_key) if cache_key else None
    message, job_input, tag = "", None, None
    if cached is None and isinstance(data, np.ndarray):
        job_input = encode_features(features)
        tag, message = infer_message(svc.celery, settings.queue_name, job_id, manifest.key, time.time())
    elif cached is None and not isinstance(data, np.ndarray):
        image = open_upload(data, settings.max_image_pixels)
        if image.width * image.height > INLINE_PIXELS:  # the pixels, not the bytes: PNG compresses
            pixels = await svc.decoder.run(upload_pixels, image, manifest)
        else:
            pixels = upload_pixels(image, manifest)
        job_input = encode_pixels(pixels)
        tag, message = infer_message(svc.celery, settings.queue_name, job_id, manifest.key, time.time())
    fields = new_record(manifest, job_id, cached_result=cached, cache_key=cache_key, input=job_input, tag=tag,
                        owner=caller.key_id, webhook_url=options.webhook_url, webhook_events=options.webhook_events)
    events = [str(event) for event in options.webhook_events]
    fingerprint = hashlib.sha256(
        f"{digest}|{manifest.key}|{options.webhook_url}|{events}|{options.expires_in}".encode()
    ).hexdigest()
    new = NewJob(fields, message, idempotency_key, fingerprint, options.expires_in)
    created = await store.create(new, settings.queue_name, settings.max_queued_jobs, caller.max_active)
    if created.replay is not None:
        return await _replay(created.replay, fingerprint, svc), False
    if created.active is not None:
        raise over_quota(caller, created.active)
    if created.fields is None:
        raise reject(status.HTTP_503_SERVICE_UNAVAILABLE, "queue_full",
                     f"the queue is full ({created.backlog} jobs queued or running; MAX_QUEUED_JOBS is "
                     f"{settings.max_queued_jobs}); retry later", QUEUE_FULL_RETRY_AFTER_SECONDS)
    SUBMITTED.labels(manifest.key).inc()
    job = to_job(created.fields)
    if cached is not None:
        svc.events.cached(job_id, job.result.label if job.result else "")
        if options.webhook_url and WebhookEvent.completed in options.webhook_events:
            await notify(job_id, WebhookEvent.completed, svc)
    return job, True


async def _replay(replay: Replay, fingerprint: str, svc: Services) -> Job:
    if replay.fingerprint != fingerprint:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "this Idempotency-Key was already used with a different request; use a new key",
        )
    job = await svc.store.get(replay.job_id)
    if job is None:  # the key outlived its job by a moment
        raise HTTPException(status.HTTP_409_CONFLICT, "the job for this Idempotency-Key has expired")
    return job


async def notify(job_id: str, event: WebhookEvent, svc: Services) -> None:
    """Queue one webhook delivery (the worker does the same for jobs it runs)."""
    await svc.store.notify(svc.celery, svc.settings.webhook_queue, [(job_id, event)])

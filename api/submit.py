"""One submission, whichever route it came by: validate, reuse a cached result or an
idempotent earlier job, else preprocess and record + enqueue atomically."""

import hashlib
import time
from dataclasses import dataclass, field

from fastapi import HTTPException, status
from starlette.concurrency import run_in_threadpool

from api.deps import Services
from api.metrics import SUBMITTED
from api.uploads import reject, resolve_model, to_pixels
from shared.jobstore import NewJob, new_job_id, new_record
from shared.queue import encode_pixels, redis_message, webhook_message
from shared.schemas import Job
from shared.webhooks import (
    EVENTS,
    WebhookRefused,
    split_list,
    validate_url,
)

# Preprocessing a small upload is quicker than a thread hop; a big one must not stall the loop.
INLINE_PREPROCESS_BYTES = 256 * 1024
MAX_IDEMPOTENCY_KEY = 255


@dataclass
class Options:
    model: str | None = None
    webhook_url: str | None = None
    webhook_events: list[str] = field(default_factory=lambda: ["completed"])
    expires_in: float | None = None
    idempotency_key: str | None = None

    def check(self, svc: Services) -> "Options":
        """Refuse bad options with 422 before any upload is processed."""
        if self.webhook_url:
            if not svc.settings.webhook_secret:
                raise reject(status.HTTP_422_UNPROCESSABLE_CONTENT, "webhooks_off",
                             "webhooks are not configured on this server (WEBHOOK_SECRET is unset)")
            try:
                validate_url(self.webhook_url, split_list(svc.settings.webhook_allowed_hosts))
            except WebhookRefused as exc:
                raise reject(status.HTTP_422_UNPROCESSABLE_CONTENT, "bad_webhook", str(exc)) from exc
            unknown = set(self.webhook_events) - set(EVENTS)
            if unknown or not self.webhook_events:
                raise reject(status.HTTP_422_UNPROCESSABLE_CONTENT, "bad_webhook",
                             f"webhook_events must be a comma-separated subset of {', '.join(EVENTS)}")
        if self.idempotency_key is not None and not 0 < len(self.idempotency_key) <= MAX_IDEMPOTENCY_KEY:
            raise reject(status.HTTP_422_UNPROCESSABLE_CONTENT, "bad_idempotency_key",
                         f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
        return self

    @staticmethod
    def events(value: str | None) -> list[str]:
        return split_list(value) if value is not None else ["completed"]


async def submit(data: bytes, options: Options, svc: Services) -> tuple[Job, bool]:
    """(the job, whether this call created it)."""
    settings, store = svc.settings, svc.store
    manifest = resolve_model(svc.registry, options.model)
    digest = hashlib.sha256(data).hexdigest()
    cache_key = f"cache:{manifest.key}:{digest}" if settings.result_cache_ttl_seconds else None
    job_id = new_job_id()
    record = dict(
        deadline=time.time() + options.expires_in if options.expires_in else None,
        webhook_url=options.webhook_url,
        webhook_events=options.webhook_events,
        cache_key=cache_key,
    )
    cached = await store.cached_result(cache_key) if cache_key else None
    message = ""
    if cached is None:
        if len(data) > INLINE_PREPROCESS_BYTES:
            pixels = await run_in_threadpool(to_pixels, data, manifest, settings.max_image_pixels)
        else:
            pixels = to_pixels(data, manifest, settings.max_image_pixels)
        args = [job_id, manifest.key, encode_pixels(pixels), time.time()]
        message = redis_message(svc.celery, settings.queue_name, job_id, args)
    fingerprint = hashlib.sha256(
        f"{digest}|{manifest.key}|{options.webhook_url}|{options.webhook_events}|{options.expires_in}".encode()
    ).hexdigest()
    new = NewJob(
        fields=new_record(manifest, job_id, cached_result=cached, **record),
        message=message,
        idempotency_key=f"idem:{options.idempotency_key}" if options.idempotency_key else "",
        idempotency_value=f"{job_id}|{fingerprint}",
    )
    job, existing = await store.create(new, settings.queue_name)
    if existing is not None:
        return await _replay(existing, fingerprint, svc), False
    SUBMITTED.labels(manifest.key).inc()
    if cached is not None and options.webhook_url and "completed" in options.webhook_events:
        await notify(job.id, "completed", svc)
    return job, True


async def _replay(stored: str, fingerprint: str, svc: Services) -> Job:
    job_id, _, original = stored.partition("|")
    if original != fingerprint:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "this Idempotency-Key was already used with a different request; use a new key",
        )
    job = await svc.store.get(job_id)
    if job is None:  # the key outlived its job by a moment
        raise HTTPException(status.HTTP_409_CONFLICT, "the job for this Idempotency-Key has expired")
    return job


async def notify(job_id: str, event: str, svc: Services) -> None:
    """Queue one webhook delivery (the worker does the same for jobs it runs)."""
    queue = svc.settings.webhook_queue
    await svc.store.push(queue, webhook_message(svc.celery, queue, job_id, event))

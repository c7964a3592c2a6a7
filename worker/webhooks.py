"""Webhook deliveries: a Celery app of its own, on its own queue, never importing TensorFlow,
so a slow receiver never delays the model.

    celery -A worker.webhooks worker

Deliveries are at least once: `webhook-id` is stable across retries for receivers to dedupe.
"""

import logging

import httpx
from celery import Celery

from shared.jobstore import JobStore
from shared.queue import make_celery
from shared.schemas import JobStatus, WebhookEvent, WebhookState
from shared.settings import get_settings
from shared.webhooks import (
    DELIVER_TASK,
    WebhookRefused,
    backoff,
    check_destination,
    retry_after_seconds,
    signed_headers,
)

log = logging.getLogger(__name__)
settings = get_settings()
app: Celery = make_celery(settings, "webhooks")
app.conf.update(
    task_default_queue=settings.webhook_queue,
    # Deliveries wait on the network, not the CPU: many threads, small prefetch.
    worker_pool="threads",
    worker_concurrency=16,
    worker_prefetch_multiplier=2,
)
store = JobStore.connect(settings.redis_url, settings.job_ttl_seconds, settings.redis_timeout_seconds, retries=8)
http = httpx.Client(timeout=settings.webhook_timeout_seconds, follow_redirects=False)
# A retry waits as an ETA message held unacknowledged; past the visibility timeout Redis
# would hand it to another worker too, so no single wait may be that long.
MAX_WAIT = min(settings.webhook_backoff_max_seconds, 0.8 * settings.visibility_timeout_seconds)


def attempt_once(url: str, msg_id: str, body: str) -> tuple[int | None, str | None, float | None]:
    """(status code, error, Retry-After seconds) of one POST."""
    try:
        check_destination(url, settings.webhook_allowed_hosts)
        response = http.post(url, content=body, headers=signed_headers(settings.webhook_secret, msg_id, body))
    except WebhookRefused as exc:
        return None, f"refused: {exc}", None
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}", None
    retry_after = retry_after_seconds(response.headers.get("retry-after"))
    return response.status_code, None if response.is_success else f"HTTP {response.status_code}", retry_after


@app.task(name=DELIVER_TASK, bind=True, acks_late=True, max_retries=None)
def deliver(self, job_id: str, event: str, attempt: int = 1) -> str:
    job, url = store.webhook_target(job_id)
    if job is None or not url:
        return "gone"
    state = job.webhook or WebhookState()
    if state.status == "disabled":
        return "disabled"
    if event == WebhookEvent.running:
        # The record as it was at that moment, though the job may have finished since.
        job = job.model_copy(update={"status": JobStatus.running, "result": None, "error": None, "finished_at": None})
    body = job.model_dump_json()
    code, error, retry_after = attempt_once(url, f"msg_{job_id}_{event}", body)
    state.last_status_code, state.last_error = code, error
    refused = error is not None and error.startswith("refused")
    if code is not None and 200 <= code < 300:
        state.status = "delivered"
    elif code == 410:
        state.status = "disabled"  # the receiver asked us to stop for this job
    elif not refused and (code is None or code == 429 or code >= 500) and attempt < settings.webhook_max_attempts:
        state.status = "pending"
        store.record_webhook_attempt(job_id, state)
        delay = min(backoff(attempt, settings.webhook_backoff_seconds, MAX_WAIT, retry_after), MAX_WAIT)
        log.info("webhook %s/%s attempt %d failed (%s); retry in %.1fs", job_id, event, attempt, error, delay)
        raise self.retry(args=(job_id, event, attempt + 1), countdown=delay)
    else:
        state.status = "failed"
    store.record_webhook_attempt(job_id, state)
    return state.status

"""Webhook deliveries: a Celery app of its own, on its own queue, never importing TensorFlow,
so a slow receiver never delays the model.

    celery -A worker.webhooks.app worker

Deliveries are at least once: `webhook-id` is stable across retries for receivers to dedupe.
Each attempt resolves the receiver's host once, vets every address (shared.webhooks) and
connects to a vetted one while the request and TLS keep the name; the whole attempt ends by
one deadline and reads at most MAX_RESPONSE_BYTES of the response (worker.webhooks.delivery). A retry waits in Redis
(JobStore.schedule_webhook_retry), not as a Celery countdown, so it survives restarts; every
webhook worker moves due retries onto the queue each second (DueRetries).

Fair between keys (worker.webhooks.gate): at most WEBHOOK_MAX_IN_FLIGHT_PER_KEY attempts of
one key under way at once, and a circuit breaker per key and receiver; a delivery turned
away is deferred in Redis (not counted as an attempt), never waited for on a thread. Bounded
in time: a receiver's Retry-After counts up to WEBHOOK_RETRY_AFTER_MAX_SECONDS, and no retry
or deferral is scheduled (nor the record kept) past WEBHOOK_RETRY_KEEP_SECONDS after the job
finished. At least once across any single crash: the scripts that change a job's status
queue its deliveries themselves (shared/jobstore/lua/_webhooks.lua), and the webhook queue
is a fair queue, whose BRPOP takes only a doorbell (no delivery out of Redis unrecorded).

Each delivery is signed with its job's owner's webhook secrets (shared.apikeys: the current
one, and the previous one for a day after a rotation), looked up per delivery; a revoked
key's jobs are not delivered. A job without an owner (AUTH_DISABLED) is signed with
WEBHOOK_SECRET, and not delivered when that is unset.
"""

import logging

from celery import Celery, bootsteps
from redis.exceptions import RedisError

from shared.apikeys import KeyOps
from shared.broker import (
    DELIVER_BATCH_TASK,
    DELIVER_TASK,
    batch_webhook_message,
    fair_queues,
    make_celery,
    patch,
    webhook_message,
)
from shared.jobstore import JobStore
from shared.redisconn import target
from shared.schemas import JobStatus, WebhookEvent, WebhookState
from shared.settings import get_settings
from shared.webhooks import backoff, signed_headers
from worker.webhooks.delivery import Outcome, post
from worker.webhooks.gate import Gate, Passage, receiver_failed

# kombu: bulk receive, safe when Redis is full, the inference queue fair (shared/broker/fair.py)
patch.install(fair_queues=fair_queues(get_settings()))
log = logging.getLogger(__name__)
settings = get_settings()
app: Celery = make_celery(
    settings, "webhooks", settings.webhook_queue,
    # Deliveries wait on the network, not the CPU: many threads, small prefetch.
    worker_pool="threads",
    worker_concurrency=16,
    worker_prefetch_multiplier=2,
)
store = JobStore.connect(target(settings), settings.job_ttl_seconds, settings.redis_timeout_seconds, retries=8)

RETRY_GRACE_SECONDS = 3600  # a job's record is kept this long after a retry is due (within the cap)
DUE_POLL_SECONDS = 1.0
DUE_BATCH = 100  # retries moved per script call; at most 10 calls per tick
gate = Gate(store, settings)


def signing_secrets(owner: str | None) -> tuple[list[str], str | None]:
    """The secrets a delivery for a job of `owner` (an API key id) is signed with, or none and
    why it is not delivered. One HMGET per delivery: a rotation or a revocation counts at once."""
    if owner is None:
        if settings.webhook_secret:
            return settings.webhook_secret, None
        return [], "not delivered: the job has no owner (AUTH_DISABLED) and WEBHOOK_SECRET is unset"
    key = store.run(KeyOps(store.keys).get(owner))
    if key is None:
        return [], "not delivered: the job's API key has been revoked"
    secrets = [secret for secret in key.webhook_secrets() if secret]
    return secrets, None if secrets else "not delivered: the job's API key has no webhook secret"


def attempt_once(url: str, msg_id: str, body: str, secrets: list[str]) -> Outcome:
    """One delivery attempt, signed with each of `secrets`."""
    headers = {**signed_headers(secrets, msg_id, body), "user-agent": "queue-inference-webhooks"}
    return post(url, body.encode(), headers, settings.webhook_allowed_hosts, settings.webhook_timeout_seconds)


def attempt_gated(owner: str | None, url: str, msg_id: str, body: str, secrets: list[str],
                  deferred: int) -> Outcome | Passage:
    """One attempt, if the gate lets it through now (worker.webhooks.gate); else the gate's
    answer, to defer the delivery by."""
    passage = gate.enter(owner, url, deferred)
    if passage.token is None:
        return passage
    outcome = Outcome(None, "the attempt did not end", None)
    try:
        outcome = attempt_once(url, msg_id, body, secrets)
    finally:
        gate.leave(passage, receiver_failed(outcome.status_code, outcome.error))
    return outcome


def retry_delay(attempt: int, retry_after: float | None) -> float | None:
    """Seconds until attempt `attempt + 1`, or None when `attempt` was the last. A receiver's
    Retry-After counts up to WEBHOOK_RETRY_AFTER_MAX_SECONDS."""
    if attempt >= settings.webhook_max_attempts:
        return None
    if retry_after is not None:
        retry_after = min(retry_after, settings.webhook_retry_after_max_seconds)
    return backoff(attempt, settings.webhook_backoff_seconds, settings.webhook_backoff_max_seconds, retry_after)


def schedule(record_id: str, message: str, delay: float, batch: bool = False, owner: str | None = None) -> int:
    """The delivery's next attempt (or the same one, deferred) in Redis' retry schedule: 1;
    0 when the record is gone; -1 past WEBHOOK_RETRY_KEEP_SECONDS after the job finished.
    `owner`'s record budget counts the record as long as the schedule keeps it."""
    return store.schedule_webhook_retry(settings.webhook_queue, record_id, message, delay, RETRY_GRACE_SECONDS,
                                        settings.webhook_retry_keep_seconds, batch, owner)


CAPPED = "no further attempt: deliveries end WEBHOOK_RETRY_KEEP_SECONDS ({:g} s) after the job finished"


@app.task(name=DELIVER_TASK, acks_late=True)
def deliver(job_id: str, event: str, attempt: int = 1, deferred: int = 0) -> str:
    job, url, owner = store.webhook_target(job_id)
    if job is None or not url:
        return "gone"
    state = job.webhook or WebhookState()
    if state.status == "disabled":
        return "disabled"
    if event == WebhookEvent.running:
        # The record as it was at that moment, though the job may have finished since.
        job = job.model_copy(update={"status": JobStatus.running, "result": None, "error": None, "finished_at": None})
    # Without `webhook`: the record's delivery state ("pending", 0 attempts) while this very
    # delivery is under way would tell the receiver nothing true.
    body = job.model_dump_json(exclude={"webhook"})
    secrets, unsigned = signing_secrets(owner)
    if unsigned:  # nobody could verify it: no attempt, no retry
        state.status, state.last_status_code, state.last_error = "failed", None, unsigned
        store.record_webhook_attempt(job_id, state)
        return state.status
    outcome = attempt_gated(owner, url, f"msg_{job_id}_{event}", body, secrets, deferred)
    if isinstance(outcome, Passage):  # deferred: the same attempt, later, not counted
        later = webhook_message(app, settings.webhook_queue, job_id, event, attempt, deferred + 1)
        scheduled = schedule(job_id, later, outcome.defer, owner=owner)
        if scheduled >= 0:
            log.info("webhook %s/%s deferred %.1fs: %s", job_id, event, outcome.defer, outcome.why)
            return "deferred" if scheduled else "gone"
        state.status = "failed"
        state.last_error = f"{outcome.why}; {CAPPED.format(settings.webhook_retry_keep_seconds)}"
        store.record_webhook_attempt(job_id, state, count=False)
        return state.status
    code, error, retry_after = outcome
    state.last_status_code, state.last_error = code, error
    refused = error is not None and error.startswith("refused")
    delay = retry_delay(attempt, retry_after)
    if code is not None and 200 <= code < 300:
        state.status = "delivered"
    elif code == 410:
        state.status = "disabled"  # the receiver asked us to stop for this job
    elif not refused and (code is None or code == 429 or code >= 500) and delay is not None:
        state.status = "pending"
        store.record_webhook_attempt(job_id, state)
        scheduled = schedule(job_id, webhook_message(app, settings.webhook_queue, job_id, event, attempt + 1), delay,
                             owner=owner)
        if scheduled > 0:
            log.info("webhook %s/%s attempt %d failed (%s); retry in %.1fs", job_id, event, attempt, error, delay)
            return state.status
        if scheduled == 0:
            return "gone"
        state.status, state.last_error = "failed", f"{error}; {CAPPED.format(settings.webhook_retry_keep_seconds)}"
        store.record_webhook_attempt(job_id, state, count=False)
        return state.status
    else:
        state.status = "failed"
    store.record_webhook_attempt(job_id, state)
    return state.status


@app.task(name=DELIVER_BATCH_TASK, acks_late=True)
def deliver_batch(batch_id: str, attempt: int = 1, deferred: int = 0) -> str:
    """A batch's one event, queued by the script that ended its last job (see
    shared/jobstore/lua/batch_create.lua): the batch, its counts and its jobs, signed with its
    owner's secrets, retried like a job's event. Its outcome is logged, not stored."""
    target = store.run(store.ops.batch_target(batch_id))
    batch = store.run(store.ops.batch(batch_id, 0, settings.max_batch_files)) if target else None
    if target is None or batch is None or not target[0]:
        return "gone"
    url, owner = target
    secrets, unsigned = signing_secrets(owner)
    if unsigned:
        log.warning("batch %s: %s", batch_id, unsigned)
        return "failed"
    outcome = attempt_gated(owner, url, f"msg_batch_{batch_id}", batch.model_dump_json(), secrets, deferred)
    if isinstance(outcome, Passage):
        message = batch_webhook_message(app, settings.webhook_queue, batch_id, attempt, deferred + 1)
        if schedule(batch_id, message, outcome.defer, batch=True, owner=owner) > 0:
            return "deferred"
        log.warning("batch %s webhook failed for good: %s, and its record ends first", batch_id, outcome.why)
        return "failed"
    code, error, retry_after = outcome
    if code is not None and 200 <= code < 300:
        return "delivered"
    refused = error is not None and error.startswith("refused")
    delay = retry_delay(attempt, retry_after)
    if not refused and (code is None or code == 429 or code >= 500) and delay is not None:
        message = batch_webhook_message(app, settings.webhook_queue, batch_id, attempt + 1)
        if schedule(batch_id, message, delay, batch=True, owner=owner) > 0:
            log.info("batch %s webhook attempt %d failed (%s); retry in %.1fs", batch_id, attempt, error, delay)
            return "pending"
    log.warning("batch %s webhook failed for good: %s", batch_id, error)
    return "failed"


def move_due_retries() -> int:
    """Move the retries that are due onto the webhook queue; how many it moved."""
    moved = 0
    try:
        for _ in range(10):
            batch = store.move_due_webhooks(settings.webhook_queue, DUE_BATCH)
            moved += batch
            if batch < DUE_BATCH:
                break
        # A doorbell lost with a webhook worker that died after its BRPOP (shared/broker/fair.py).
        if store.ring(settings.webhook_queue):
            log.info("rang the webhook queue's doorbell again: deliveries were waiting without one")
    except RedisError as exc:
        log.warning("moving due webhook retries failed: %s", exc)
    return moved


class DueRetries(bootsteps.StartStopStep):
    """Every DUE_POLL_SECONDS, in every webhook worker: due retries from Redis onto the queue
    (atomic: each is moved once, whichever worker gets there)."""

    requires = frozenset({"celery.worker.consumer.tasks:Tasks"})
    tref = None

    def start(self, consumer):
        self.tref = consumer.timer.call_repeatedly(DUE_POLL_SECONDS, move_due_retries)

    def stop(self, consumer):
        if self.tref is not None:
            self.tref.cancel()


app.steps["consumer"].add(DueRetries)

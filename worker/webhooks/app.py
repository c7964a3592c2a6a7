"""Webhook deliveries: a Celery app of its own, on its own queue, never importing TensorFlow,
so a slow receiver never delays the model.

    celery -A worker.webhooks.app worker

Deliveries are at least once: `webhook-id` is stable across retries for receivers to dedupe.
Each attempt resolves the receiver's host once, vets every address (shared.webhooks) and
connects to a vetted one while the request and TLS keep the name; the whole attempt ends by
one deadline and reads at most MAX_RESPONSE_BYTES of the response. A retry waits in Redis
(JobStore.schedule_webhook_retry), not as a Celery countdown, so it survives restarts; every
webhook worker moves due retries onto the queue each second (DueRetries).

Each delivery is signed with its job's owner's webhook secrets (shared.apikeys: the current
one, and the previous one for a day after a rotation), looked up per delivery; a revoked
key's jobs are not delivered. A job without an owner (AUTH_DISABLED) is signed with
WEBHOOK_SECRET, and not delivered when that is unset.
"""

import contextlib
import logging
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, NamedTuple

import httpcore
import httpx
from celery import Celery, bootsteps
from redis.exceptions import RedisError

from shared.apikeys import KeyOps
from shared.broker import DELIVER_BATCH_TASK, DELIVER_TASK, batch_webhook_message, make_celery, patch, redis_message
from shared.jobstore import JobStore
from shared.schemas import JobStatus, WebhookEvent, WebhookState
from shared.settings import get_settings
from shared.webhooks import (
    Destination,
    Resolver,
    WebhookRefused,
    backoff,
    check_destination,
    resolve,
    retry_after_seconds,
    signed_headers,
)

patch.install()  # kombu: bulk receive, safe when Redis is full
log = logging.getLogger(__name__)
settings = get_settings()
app: Celery = make_celery(
    settings, "webhooks", settings.webhook_queue,
    # Deliveries wait on the network, not the CPU: many threads, small prefetch.
    worker_pool="threads",
    worker_concurrency=16,
    worker_prefetch_multiplier=2,
)
store = JobStore.connect(settings.redis_url, settings.job_ttl_seconds, settings.redis_timeout_seconds, retries=8)

MAX_RESPONSE_BYTES = 64 * 1024  # of a response body; the status decides, the rest is not read
WRITE_CHUNK = 4096  # each piece of a request waits for the socket at most until the deadline
RETRY_GRACE_SECONDS = 3600  # a job's record is kept at least this long after a retry is due
DUE_POLL_SECONDS = 1.0
DUE_BATCH = 100  # retries moved per script call; at most 10 calls per tick
TLS = httpx.create_ssl_context()  # certifi's CAs, as httpx verifies by default
# Name resolution has no time-out of its own: it runs here, and the attempt waits only
# until its deadline.
_resolvers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook-dns")
HTTP_ERRORS = (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError)


class Outcome(NamedTuple):
    """One attempt: its status code (None: no response), error, and Retry-After seconds."""

    status_code: int | None
    error: str | None
    retry_after: float | None


class _DeadlineStream(httpcore.NetworkStream):
    """A connection on which every read, write and TLS handshake ends by one deadline, so a
    receiver that trickles bytes cannot stretch an attempt."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float):
        self._stream, self._deadline = stream, deadline

    def _left(self, timeout_error: type[httpcore.TimeoutException]) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise timeout_error(f"the attempt's deadline ({settings.webhook_timeout_seconds}s) passed")
        return left

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._left(httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), WRITE_CHUNK):
            self._stream.write(buffer[start:start + WRITE_CHUNK], self._left(httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        # The handshake checks the certificate against server_hostname: the URL's name.
        tls = self._stream.start_tls(ssl_context, server_hostname, self._left(httpcore.ConnectTimeout))
        return _DeadlineStream(tls, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _VettedBackend(httpcore.NetworkBackend):
    """Connects to the destination's vetted addresses and port only, in order, whatever host
    httpcore asks for (the URL's name, which it keeps for Host and TLS)."""

    def __init__(self, destination: Destination, deadline: float):
        self._destination, self._deadline = destination, deadline
        self._tcp = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        error: httpcore.ConnectError | None = None
        for address in self._destination.addresses:
            left = self._deadline - time.monotonic()
            if left <= 0:
                break
            try:
                stream = self._tcp.connect_tcp(address, self._destination.port, left, socket_options=socket_options)
            except httpcore.ConnectError as exc:
                error = exc  # e.g. no IPv6 route: try the next address
                continue
            return _DeadlineStream(stream, self._deadline)
        raise error or httpcore.ConnectTimeout(f"the attempt's deadline ({settings.webhook_timeout_seconds}s) passed")


def _resolver(deadline: float) -> Resolver:
    """shared.webhooks.resolve, waited for until the deadline at most."""

    def resolve_by_deadline(host: str, port: int) -> list[str]:
        future = _resolvers.submit(resolve, host, port)
        try:
            return future.result(max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            future.cancel()
            raise httpcore.ConnectTimeout(f"resolving {host} outlasted the attempt's deadline") from None

    return resolve_by_deadline


def _drain(response: httpcore.Response) -> None:
    """Read and drop the body up to MAX_RESPONSE_BYTES. The status has decided already: a body
    cut short (by the deadline, or the receiver) changes nothing."""
    read = 0
    with contextlib.suppress(*HTTP_ERRORS):
        for chunk in response.iter_stream():
            read += len(chunk)
            if read >= MAX_RESPONSE_BYTES:
                return


def post(url: str, body: bytes, headers: dict[str, str], allowed_hosts: list[str], timeout: float,
         tls: ssl.SSLContext = TLS) -> Outcome:
    """POST `body` to `url`: resolve once, vet, connect to a vetted address (Host and TLS
    keep the name), no redirects, read at most MAX_RESPONSE_BYTES, all within `timeout`."""
    deadline = time.monotonic() + timeout
    try:
        destination = check_destination(url, allowed_hosts, _resolver(deadline))
        request = httpx.Request("POST", url, headers=headers, content=body)  # adds Host, Content-Length
        target = httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port,
                              target=request.url.raw_path)
        backend = _VettedBackend(destination, deadline)
        with (httpcore.ConnectionPool(ssl_context=tls, network_backend=backend) as pool,
              pool.stream("POST", target, headers=request.headers.raw, content=request.content) as response):
            _drain(response)
    except (WebhookRefused, httpx.InvalidURL) as exc:
        return Outcome(None, f"refused: {exc}", None)
    except HTTP_ERRORS as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}", None)
    code = response.status
    retry_after = next((v.decode("latin-1") for k, v in response.headers if k.lower() == b"retry-after"), None)
    return Outcome(code, None if 200 <= code < 300 else f"HTTP {code}", retry_after_seconds(retry_after))


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


def retry_message(job_id: str, event: str, attempt: int) -> str:
    """The task message of attempt `attempt` of one event's delivery."""
    queue = settings.webhook_queue
    return redis_message(app, queue, f"{job_id}-{event}-{attempt}", [job_id, event, attempt], task=DELIVER_TASK)


@app.task(name=DELIVER_TASK, acks_late=True)
def deliver(job_id: str, event: str, attempt: int = 1) -> str:
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
    code, error, retry_after = attempt_once(url, f"msg_{job_id}_{event}", body, secrets)
    state.last_status_code, state.last_error = code, error
    refused = error is not None and error.startswith("refused")
    if code is not None and 200 <= code < 300:
        state.status = "delivered"
    elif code == 410:
        state.status = "disabled"  # the receiver asked us to stop for this job
    elif not refused and (code is None or code == 429 or code >= 500) and attempt < settings.webhook_max_attempts:
        state.status = "pending"
        store.record_webhook_attempt(job_id, state)
        delay = backoff(attempt, settings.webhook_backoff_seconds, settings.webhook_backoff_max_seconds, retry_after)
        if not store.schedule_webhook_retry(settings.webhook_queue, job_id, retry_message(job_id, event, attempt + 1),
                                            delay, RETRY_GRACE_SECONDS):
            return "gone"
        log.info("webhook %s/%s attempt %d failed (%s); retry in %.1fs", job_id, event, attempt, error, delay)
        return state.status
    else:
        state.status = "failed"
    store.record_webhook_attempt(job_id, state)
    return state.status


@app.task(name=DELIVER_BATCH_TASK, acks_late=True)
def deliver_batch(batch_id: str, attempt: int = 1) -> str:
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
    code, error, retry_after = attempt_once(url, f"msg_batch_{batch_id}", batch.model_dump_json(), secrets)
    if code is not None and 200 <= code < 300:
        return "delivered"
    refused = error is not None and error.startswith("refused")
    if not refused and (code is None or code == 429 or code >= 500) and attempt < settings.webhook_max_attempts:
        delay = backoff(attempt, settings.webhook_backoff_seconds, settings.webhook_backoff_max_seconds, retry_after)
        message = batch_webhook_message(app, settings.webhook_queue, batch_id, attempt + 1)
        if store.schedule_webhook_retry(settings.webhook_queue, batch_id, message, delay, RETRY_GRACE_SECONDS,
                                        batch=True):
            log.info("batch %s webhook attempt %d failed (%s); retry in %.1fs", batch_id, attempt, error, delay)
            return "pending"
        return "gone"
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

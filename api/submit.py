"""One submission, whichever route it came by: reuse a cached result or an idempotent
earlier job, else prepare its input (api.inputs) and record + enqueue atomically. `submit`
takes the steps below in order."""

import hashlib
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from fastapi import HTTPException, UploadFile, status

from api.auth import Caller, over_budget, over_quota
from api.errors import reject
from api.inputs import stored_input
from api.loadable import check_loadable
from api.metrics import SUBMITTED
from api.services import Services
from api.uploads import read_upload, resolve_model, takes
from shared.broker import infer_message
from shared.codec import FEATURE_DTYPE
from shared.jobstore import Created, NewJob, Replay, new_job_id, new_record, to_job
from shared.registry import Manifest
from shared.schemas import Job, Priority, WebhookEvent

QUEUE_FULL_RETRY_AFTER_SECONDS = 5


@dataclass
class SubmitOptions:
    """What a submission asks for besides its image (checked by api.deps.submit_options)."""

    model: str | None = None
    webhook_url: str | None = None
    webhook_events: list[WebhookEvent] = field(default_factory=lambda: [WebhookEvent.completed])
    expires_in: float | None = None  # the deadline: expires_in or Cancel-After, the earlier
    priority: Priority = Priority.normal  # its lane; checked against the key's max_priority already


class _Cache(NamedTuple):
    """Where the result of this input, model and key is cached (None: caching is off), and
    the result found there (None: none yet)."""

    key: str | None
    result: str | None


class _Run(NamedTuple):
    """What a job that runs records and enqueues (nothing, for one answered from the cache)."""

    input: str | None = None
    tag: str | None = None
    message: str = ""


class Prepared(NamedTuple):
    """A submission checked and its input prepared, nothing written yet (`prepare`)."""

    job_id: str
    manifest: Manifest
    digest: str
    cache: _Cache
    run: _Run
    lane: str
    member: str


async def submit(data: bytes | np.ndarray, options: SubmitOptions, svc: Services, caller: Caller,
                 idempotency_key: str | None = None, worker_decodes: bool = False) -> tuple[Job, bool]:
    """(the job, whether this call created it), owned by the caller's key. `data`: an
    image's bytes, or a features model's checked values (api.features.feature_vector).
    `worker_decodes`: a small image (DECODE_IN_WORKER_MAX_BYTES) is stored as it came, its
    header checked, for the worker to decode (POST /jobs; a batch's items and /predict are
    decoded here, so that each bad one is its own 4xx)."""
    prepared = await prepare(data, options, svc, caller, worker_decodes)
    return await record(prepared, options, svc, caller, idempotency_key)


async def prepare(data: bytes | np.ndarray, options: SubmitOptions, svc: Services, caller: Caller,
                  worker_decodes: bool = False) -> Prepared:
    """Every check of the input, and its preparation: the 4xx for a bad one comes from here,
    before anything is recorded (a batch prepares all its files before it records one)."""
    manifest = resolve_model(svc.registry, options.model)
    await check_loadable(manifest, caller, svc)  # 409 for a version a tenant may not make workers load
    data, digest = _identify(data, manifest)
    cache = await _look_up(digest, manifest, caller, svc)
    job_id = new_job_id()
    lane, member = _place(options, caller, svc)
    run = _Run() if cache.result is not None else await _run(job_id, data, manifest, lane, member, svc,
                                                             worker_decodes)
    return Prepared(job_id, manifest, digest, cache, run, lane, member)


async def prepare_upload(upload: UploadFile, options: SubmitOptions, svc: Services,
                         caller: Caller) -> Prepared | HTTPException:
    """One file of a batch prepared, or the 4xx its item reports; an unknown model fails every
    file alike, so it fails the whole request (raised)."""
    try:
        return await prepare(read_upload(upload, svc.settings.max_upload_bytes), options, svc, caller)
    except HTTPException as exc:
        if exc.status_code == status.HTTP_404_NOT_FOUND:
            raise
        return exc


async def record(prepared: Prepared, options: SubmitOptions, svc: Services, caller: Caller,
                 idempotency_key: str | None = None) -> tuple[Job, bool]:
    """Record and enqueue a prepared submission, atomically: (the job, whether this call created it)."""
    job_id, manifest, digest, cache, run, lane, member = prepared
    fingerprint = _fingerprint(digest, manifest, options)
    new = NewJob(_record(job_id, manifest, cache, run, options, caller), run.message, idempotency_key, fingerprint,
                 options.expires_in, lane=lane, weight=caller.weight, fair_owner=member)
    created = await svc.store.create(new, svc.settings.queue_name, svc.settings.max_queued_jobs, caller.max_active,
                                     max_records=caller.max_records)
    job, is_new = await _outcome(created, fingerprint, caller, svc)
    if is_new:
        await _count_and_notify(job, manifest, cache, options, svc)
    return job, is_new


def _identify(data: bytes | np.ndarray, manifest: Manifest) -> tuple[bytes | np.ndarray, str]:
    """The input as it is stored, and its digest (the cache's and the fingerprint's); 415
    for an image sent to a features model."""
    if isinstance(data, np.ndarray):  # the same numbers, however sent, are the same input
        features = np.ascontiguousarray(data, dtype=FEATURE_DTYPE)
        return features, hashlib.sha256(b"features:" + features.tobytes()).hexdigest()
    takes(manifest, "image")
    return data, hashlib.sha256(data).hexdigest()


async def _look_up(digest: str, manifest: Manifest, caller: Caller, svc: Services) -> _Cache:
    """A result cached for this input (per key and model: results are not shared)."""
    if not svc.settings.result_cache_ttl_seconds:
        return _Cache(None, None)
    key = svc.store.keys.cache(caller.key_id, manifest.key, digest)
    return _Cache(key, await svc.store.cached_result(key))


async def _run(job_id: str, data: bytes | np.ndarray, manifest: Manifest, lane: str, member: str,
               svc: Services, worker_decodes: bool) -> _Run:
    """The input prepared (4xx when it is bad) and the task message that runs it, to wait in
    `lane`, in `member`'s list (_place)."""
    job_input = await stored_input(data, manifest, svc.settings.max_image_pixels, svc.decoder,
                                   svc.settings.decode_in_worker_max_bytes if worker_decodes else 0)
    tag, message = infer_message(svc.celery, svc.settings.queue_name, job_id, manifest.key, time.time(),
                                 lane=lane, owner=member)
    return _Run(job_input, tag, message)


# With FAIR_SHARE=false every job waits in one list of one lane: first come, first served.
_EVERYONE = "*"


def _place(options: SubmitOptions, caller: Caller, svc: Services) -> tuple[str, str]:
    """Where the job waits in the fair queue: its lane, and whose list (its key's)."""
    if not svc.settings.fair_share:
        return "normal", _EVERYONE
    return options.priority.value, caller.key_id or ""


def _fingerprint(digest: str, manifest: Manifest, options: SubmitOptions) -> str:
    """Of the whole request: an Idempotency-Key sent again with another is refused. The
    deadline is its seconds from submission (expires_in or Cancel-After, the earlier), so the
    same request sent again is the same. A normal priority adds nothing: a key used before
    lanes existed, retried now, is still a replay."""
    events = [str(event) for event in options.webhook_events]
    lane = "" if options.priority == Priority.normal else f"|{options.priority.value}"
    return hashlib.sha256(
        f"{digest}|{manifest.key}|{options.webhook_url}|{events}|{options.expires_in}{lane}".encode()
    ).hexdigest()


def _record(job_id: str, manifest: Manifest, cache: _Cache, run: _Run, options: SubmitOptions,
            caller: Caller) -> dict[str, str]:
    return new_record(manifest, job_id, cached_result=cache.result, cache_key=cache.key, input=run.input, tag=run.tag,
                      owner=caller.key_id, webhook_url=options.webhook_url, webhook_events=options.webhook_events,
                      priority=options.priority)


async def _outcome(created: Created, fingerprint: str, caller: Caller, svc: Services) -> tuple[Job, bool]:
    """What `create` did, as submit's answer: the job recorded now, or the earlier one of
    this Idempotency-Key; or the refusal: the key's quota (429), a full queue (503)."""
    if created.replay is not None:
        return await _replay(created.replay, fingerprint, svc), False
    if created.active is not None:
        raise over_quota(caller, created.active)
    if created.held is not None:
        raise over_budget(caller, created.held, svc.settings.finished_job_ttl_seconds)
    if created.fields is None:
        raise reject(status.HTTP_503_SERVICE_UNAVAILABLE, "queue_full",
                     f"the queue is full ({created.backlog} jobs queued or running; MAX_QUEUED_JOBS is "
                     f"{svc.settings.max_queued_jobs}); retry later", QUEUE_FULL_RETRY_AFTER_SECONDS)
    return to_job(created.fields), True


async def _count_and_notify(job: Job, manifest: Manifest, cache: _Cache, options: SubmitOptions,
                            svc: Services) -> None:
    """A new job is counted; one answered from the cache is done already, so its events go
    now (its `completed` webhook was queued by the create script itself)."""
    SUBMITTED.labels(manifest.key).inc()
    if cache.result is None:
        return
    svc.events.cached(job.id, job.result.label if job.result else "")


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


async def check_budget(caller: Caller, svc: Services, records: int) -> None:
    """429 `budget` unless the caller's key can hold `records` more (a batch: its jobs and its
    handle), before any is written: a batch is refused whole. Each job's create checks again,
    atomically; this read only keeps a batch from being cut short."""
    if caller.key_id is None or not caller.max_records:
        return
    held = await svc.store.held(caller.key_id)
    if held.records + records > caller.max_records:
        raise over_budget(caller, held, svc.settings.finished_job_ttl_seconds, records)


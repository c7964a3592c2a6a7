"""The batch routes: POST /jobs/batch (one job per file, and the batch that follows them)
and GET /batches/{id} (their counts and jobs, with a long-poll until all have ended)."""

import re
import time
from contextlib import nullcontext
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Response, status

from api.auth import CallerDep, admit, caller
from api.deps import BatchFilesDep, IdempotencyKeyDep, SubmitOptionsDep, check_webhook_url
from api.limits import MANY_FILES
from api.openapi import BUSY, problem_content, problems
from api.reads import ReaderDep, long_poll
from api.routes.jobs import PRIORITY_REFUSED, long_poll_wait
from api.services import ServicesDep
from api.submit import check_budget, prepare_upload, record
from shared.broker import batch_webhook_message
from shared.jobstore import BATCH_ID, new_job_id
from shared.schemas import Batch, BatchItem, BatchResponse, Problem

router = APIRouter(tags=["jobs"], dependencies=[Depends(caller)])

_BATCH = {**problems(400, 403, 404, 408, 413, 429, 503,
                    described={403: PRIORITY_REFUSED, 404: "Unknown model", 503: BUSY}), 422: {
    "model": BatchResponse, "content": problem_content(),
    "description": "No file was accepted (the items say why), or a field failed validation (a problem)"}}

@router.post("/jobs/batch", status_code=status.HTTP_202_ACCEPTED, response_model=BatchResponse, **MANY_FILES,
             responses=_BATCH)
async def submit_batch(
    response: Response, files: BatchFilesDep, options: SubmitOptionsDep, idempotency_key: IdempotencyKeyDep,
    svc: ServicesDep, caller: CallerDep,
    batch_webhook_url: Annotated[str | None, Form(description=(
        "POSTed one signed event (the batch, as GET /batches/{id} answers it) once every job of the batch has "
        "ended; the same rules as webhook_url"))] = None,
) -> BatchResponse:
    """One job per file. A bad file is reported in its item; the good ones are queued. The
    rate limit counts every file. `batch_id` follows them all (GET /batches/{id}).

    With an Idempotency-Key, file number i is submitted with the key `<key>#<i>`: the same
    request again (a retry after a lost answer) replays the same jobs."""
    if batch_webhook_url is not None:
        check_webhook_url(batch_webhook_url, svc.settings)
    # Refused whole, before the rate is spent: the jobs (with their keys) and the batch's record.
    await check_budget(caller, svc, len(files) * (2 if idempotency_key else 1) + 1)
    await admit(caller, svc, response, len(files))
    # Every file is checked and prepared before any is recorded: a bad one fails in its item,
    # and whatever the last file holds, the answer (and its batch_id) comes back.
    prepared = [await prepare_upload(upload, options, svc, caller) for upload in files]
    items = []
    for index, (upload, ready) in enumerate(zip(files, prepared, strict=True)):
        try:
            if isinstance(ready, HTTPException):
                raise ready
            item_key = f"{idempotency_key}#{index}" if idempotency_key else None
            job, _ = await record(ready, options, svc, caller, item_key)
            items.append(BatchItem(index=index, filename=upload.filename, job=job,
                                   status_code=200 if job.status.terminal else 202))
        except HTTPException as exc:
            items.append(BatchItem(index=index, filename=upload.filename,
                                   error=Problem.of(exc.status_code, str(exc.detail)), status_code=exc.status_code))
    job_ids = [item.job.id for item in items if item.job]
    if not job_ids:
        response.status_code = status.HTTP_422_UNPROCESSABLE_CONTENT
        return BatchResponse(items=items)
    batch_id = new_job_id()
    queue = svc.settings.webhook_queue
    message = batch_webhook_message(svc.celery, queue, batch_id)
    webhook = (batch_webhook_url, queue, message) if batch_webhook_url else None
    await svc.store.create_batch(batch_id, job_ids, caller.key_id, webhook)
    return BatchResponse(items=items, batch_id=batch_id)


@router.get("/batches/{batch_id}", response_model=Batch,
            responses=problems(404, 422, 429, 503, described={404: "No such batch (unknown, or expired)"}))
async def get_batch(
    batch_id: str,
    svc: ServicesDep,
    caller: ReaderDep,
    wait: Annotated[float, long_poll_wait("every job to end")] = 0,
    offset: Annotated[int, Query(ge=0, le=10_000, description="The page's first job (next_offset)")] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
) -> Batch:
    """A POST /jobs/batch's jobs: counts by status, `done` once every job is terminal, and a
    page of the jobs in submission order."""
    deadline = time.monotonic() + wait
    with long_poll(caller, svc.settings.max_long_polls_per_key) if wait else nullcontext():
        while True:
            # An id the API never makes is never made into a key (`X:hook` named X's webhook hash).
            batch = (await svc.store.batch(batch_id, offset, limit, caller.key_id)
                     if re.match(BATCH_ID, batch_id) else None)
            if batch is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no batch {batch_id!r} (unknown, or expired)")
            left = deadline - time.monotonic()
            if batch.done or left <= 0:
                return batch
            # Wait for one unfinished job at a time: the waiter wakes on its end.
            whole = offset == 0 and batch.next_offset is None  # the page holds every job already
            pending = batch if whole else await svc.store.batch(batch_id, 0, batch.total, caller.key_id)
            unfinished = [job.id for job in (pending.jobs if pending else []) if not job.status.terminal]
            if not unfinished:
                continue
            await svc.waiter.wait_for_job(svc.store, unfinished[0], left, caller.key_id)

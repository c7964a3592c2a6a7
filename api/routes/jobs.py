import re
import time

from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    Header,
    HTTPException,
    Query,
    Response,
    UploadFile,
    status,
)

from api.deps import Services, services
from api.submit import Options, notify, submit
from api.uploads import read_upload
from api.waiter import Waiter
from shared.jobstore import AsyncJobStore
from shared.schemas import BatchItem, BatchResponse, Job, JobPage, JobStatus, Problem

router = APIRouter(tags=["jobs"])
MAX_WAIT_SECONDS = 60

_ERRORS = {
    404: {"model": Problem, "description": "Unknown model"},
    413: {"model": Problem, "description": "Upload or image too large"},
    415: {"model": Problem, "description": "Not an image in a supported format"},
    422: {"model": Problem, "description": "Corrupt or empty image; bad option; Idempotency-Key reused"},
    503: {"model": Problem, "description": "Queue unavailable; retry after Retry-After seconds"},
}
_WEBHOOK_URL = Form(None, description="POSTed the signed job record (Standard Webhooks)")
_WEBHOOK_EVENTS = Form(None, description="Comma-separated: completed (default), running")
_EXPIRES_IN = Form(None, gt=0, description="Seconds; a job still queued then fails with code `expired`")
_MODEL = Form(None, description="'name' or 'name:version'; the default model if absent")


def _prefer_wait(prefer: str | None) -> float:
    """RFC 7240 `Prefer: wait=S`, capped at MAX_WAIT_SECONDS."""
    match = re.search(r"(?:^|[,;\s])wait=(\d+(?:\.\d+)?)", prefer or "")
    return min(float(match.group(1)), MAX_WAIT_SECONDS) if match else 0.0


async def wait_for_job(job_id: str, wait: float, store: AsyncJobStore, waiter: Waiter) -> Job | None:
    """The job once terminal, or as it is when `wait` seconds have passed (None: unknown)."""
    deadline = time.monotonic() + wait
    while True:
        future = waiter.register(job_id) if wait > 0 else None
        job = await store.get(job_id)
        remaining = deadline - time.monotonic()
        if job is None or job.status.terminal or remaining <= 0:
            if future is not None:
                await waiter.wait(job_id, future, 0)
            return job
        await waiter.wait(job_id, future, remaining)


@router.post("/jobs", status_code=status.HTTP_202_ACCEPTED, response_model=Job, responses=_ERRORS)
async def submit_job(
    response: Response,
    file: UploadFile = File(..., description="PNG, JPEG, WebP, BMP, GIF (first frame) or TIFF"),
    model: str | None = _MODEL,
    webhook_url: str | None = _WEBHOOK_URL,
    webhook_events: str | None = _WEBHOOK_EVENTS,
    expires_in: float | None = _EXPIRES_IN,
    prefer: str | None = Header(None, description="`wait=S` (S <= 60): answer when done or after S s"),
    idempotency_key: str | None = Header(None, description="Same key + same request = the same job"),
    svc: Services = Depends(services),
) -> Job:
    """Validate and preprocess the image, record the job, enqueue it: 202 and the job.

    200 instead when the answer is already final: a cached result, a replayed
    Idempotency-Key, or a job that finished within `Prefer: wait=S`."""
    options = Options(model, webhook_url, Options.events(webhook_events), expires_in, idempotency_key).check(svc)
    job, created = await submit(read_upload(file, svc.settings.max_upload_bytes), options, svc)
    response.headers["Location"] = f"/jobs/{job.id}"
    wait = _prefer_wait(prefer)
    if wait:
        response.headers["Preference-Applied"] = f"wait={wait:g}"
        job = await wait_for_job(job.id, wait, svc.store, svc.waiter) or job
    if not created or job.status.terminal:
        response.status_code = status.HTTP_200_OK
    return job


@router.post("/jobs/batch", status_code=status.HTTP_202_ACCEPTED, response_model=BatchResponse,
             responses={422: {"model": Problem, "description": "No file was accepted"}})
async def submit_batch(
    response: Response,
    files: list[UploadFile] = File(..., description="Several images; one job each, in order"),
    model: str | None = _MODEL,
    webhook_url: str | None = _WEBHOOK_URL,
    webhook_events: str | None = _WEBHOOK_EVENTS,
    expires_in: float | None = _EXPIRES_IN,
    svc: Services = Depends(services),
) -> BatchResponse:
    """One job per file. A bad file is reported in its item; the good ones are queued."""
    if len(files) > svc.settings.max_batch_files:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                            f"at most {svc.settings.max_batch_files} files per batch; got {len(files)}")
    options = Options(model, webhook_url, Options.events(webhook_events), expires_in).check(svc)
    items = []
    for index, upload in enumerate(files):
        try:
            job, _ = await submit(read_upload(upload, svc.settings.max_upload_bytes), options, svc)
            items.append(BatchItem(index=index, filename=upload.filename, job=job,
                                   status_code=200 if job.status.terminal else 202))
        except HTTPException as exc:
            if exc.status_code == status.HTTP_404_NOT_FOUND:
                raise  # an unknown model fails every item alike
            items.append(BatchItem(index=index, filename=upload.filename, error=Problem(detail=exc.detail),
                                   status_code=exc.status_code))
    if not any(item.job for item in items):
        response.status_code = status.HTTP_422_UNPROCESSABLE_CONTENT
    return BatchResponse(items=items)


@router.get("/jobs", response_model=JobPage)
async def list_jobs(
    status_filter: JobStatus | None = Query(None, alias="status"),
    limit: int = Query(20, ge=1, le=100),
    cursor: str | None = Query(None, description="next_cursor of the previous page"),
    svc: Services = Depends(services),
) -> JobPage:
    """Recent jobs, newest first (those still within their retention)."""
    try:
        before = float(cursor) if cursor else None
    except ValueError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "cursor must be a next_cursor value") from None
    jobs, next_score = await svc.store.recent(limit, before, status_filter.value if status_filter else None)
    return JobPage(jobs=jobs, next_cursor=repr(next_score) if next_score is not None else None)


@router.get("/jobs/{job_id}", response_model=Job, responses={404: {"model": Problem}})
async def get_job(
    job_id: str,
    wait: float = Query(0, ge=0, le=MAX_WAIT_SECONDS, description="Long-poll: wait up to S s for the end"),
    svc: Services = Depends(services),
) -> Job:
    job = await wait_for_job(job_id, wait, svc.store, svc.waiter)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r} (unknown, or expired)")
    return job


@router.delete("/jobs/{job_id}", response_model=Job,
               responses={404: {"model": Problem}, 409: {"model": Problem, "description": "Not queued"}})
async def cancel_job(job_id: str, svc: Services = Depends(services)) -> Job:
    """Cancel a queued job: the worker will skip it. A running or finished job answers 409."""
    before = await svc.store.cancel(job_id)
    if before is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r} (unknown, or expired)")
    if before != JobStatus.queued:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} is {before.value}; only a queued job can be cancelled")
    url, events = await svc.store.get_fields(job_id, "webhook_url", "webhook_events")
    if url and "completed" in (events or "").split(","):
        await notify(job_id, "completed", svc)
    return await svc.store.get(job_id)


router.add_api_route("/jobs/{job_id}/cancel", cancel_job, methods=["POST"], response_model=Job,
                     responses={404: {"model": Problem}, 409: {"model": Problem}})

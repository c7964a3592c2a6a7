import re
import time

from fastapi import APIRouter, Depends, File, Form, Header, HTTPException, Query, Response, UploadFile, status
from starlette.concurrency import run_in_threadpool

from api.deps import Services, services
from api.metrics import SUBMITTED
from api.uploads import read_tensor, resolve_model
from api.waiter import Waiter
from shared.jobstore import AsyncJobStore
from shared.queue import encode_tensor, redis_message
from shared.schemas import Job, Problem

router = APIRouter(tags=["jobs"])
MAX_WAIT_SECONDS = 60
# Preprocessing a small upload is quicker than a thread hop; a big one must not stall the loop.
INLINE_PREPROCESS_BYTES = 256 * 1024

_ERRORS = {
    404: {"model": Problem, "description": "Unknown model"},
    413: {"model": Problem, "description": "Upload or image too large"},
    415: {"model": Problem, "description": "Not an image in a supported format"},
    422: {"model": Problem, "description": "Corrupt or empty image"},
    503: {"model": Problem, "description": "Queue unavailable; retry after Retry-After seconds"},
}


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


async def enqueue(file: UploadFile, model: str | None, svc: Services) -> Job:
    settings = svc.settings
    manifest = resolve_model(svc.registry, model)
    args = (file, manifest, settings.max_upload_bytes, settings.max_image_pixels)
    if (file.size or 0) > INLINE_PREPROCESS_BYTES:
        tensor = await run_in_threadpool(read_tensor, *args)
    else:
        tensor = read_tensor(*args)
    payload, submitted_at = encode_tensor(tensor), time.time()
    job = await svc.store.create_and_enqueue(
        manifest,
        settings.queue_name,
        lambda job_id: redis_message(svc.celery, settings.queue_name, job_id, [job_id, manifest.key, payload, submitted_at]),
    )
    SUBMITTED.labels(manifest.key).inc()
    return job


@router.post("/jobs", status_code=status.HTTP_202_ACCEPTED, response_model=Job, responses=_ERRORS)
async def submit_job(
    response: Response,
    file: UploadFile = File(..., description="PNG, JPEG, WebP, BMP, GIF (first frame) or TIFF"),
    model: str | None = Form(None, description="'name' or 'name:version'; default model if absent"),
    prefer: str | None = Header(None, description="`wait=S` (S <= 60): answer when done or after S s"),
    svc: Services = Depends(services),
) -> Job:
    """Validate and preprocess the image, record the job, enqueue it (202).

    With `Prefer: wait=S` the answer comes when the job is finished (200) or after S
    seconds (202, still queued or running)."""
    job = await enqueue(file, model, svc)
    response.headers["Location"] = f"/jobs/{job.id}"
    wait = _prefer_wait(prefer)
    if wait:
        response.headers["Preference-Applied"] = f"wait={wait:g}"
        job = await wait_for_job(job.id, wait, svc.store, svc.waiter) or job
        if job.status.terminal:
            response.status_code = status.HTTP_200_OK
    return job


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

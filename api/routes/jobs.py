import re
import time

from fastapi import APIRouter, Depends, File, Form, Header, HTTPException, Query, Response, UploadFile, status
from starlette.concurrency import run_in_threadpool

from api.deps import Settings, get_producer, get_registry, get_settings, get_store, get_waiter
from api.metrics import SUBMITTED
from api.uploads import read_tensor, resolve_model
from api.waiter import Waiter
from shared.jobstore import JobStore
from shared.queue import INFER_TASK, encode_tensor
from shared.registry import Registry
from shared.schemas import Job, Problem

router = APIRouter(tags=["jobs"])
MAX_WAIT_SECONDS = 60

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


async def wait_for_job(job_id: str, wait: float, store: JobStore, waiter: Waiter) -> Job | None:
    """The job once terminal, or as it is when `wait` seconds have passed (None: unknown)."""
    deadline = time.monotonic() + wait
    while True:
        future = waiter.register(job_id) if wait > 0 else None
        job = await run_in_threadpool(store.get, job_id)
        remaining = deadline - time.monotonic()
        if job is None or job.status.terminal or remaining <= 0:
            if future is not None:
                await waiter.wait(job_id, future, 0)
            return job
        await waiter.wait(job_id, future, remaining)


def _enqueue(file: UploadFile, model: str | None, settings: Settings, registry: Registry,
             store: JobStore, producer) -> Job:
    manifest = resolve_model(registry, model)
    tensor = read_tensor(file, manifest, settings.max_upload_bytes, settings.max_image_pixels)
    job = store.create(manifest)
    try:
        producer.send_task(
            INFER_TASK, args=[job.id, manifest.key, encode_tensor(tensor), time.time()], task_id=job.id
        )
    except Exception:
        # Never leave a queued record that no message will ever run.
        store.delete(job.id)
        raise
    SUBMITTED.labels(manifest.key).inc()
    return job


@router.post("/jobs", status_code=status.HTTP_202_ACCEPTED, response_model=Job, responses=_ERRORS)
async def submit_job(
    response: Response,
    file: UploadFile = File(..., description="PNG, JPEG, WebP, BMP, GIF (first frame) or TIFF"),
    model: str | None = Form(None, description="'name' or 'name:version'; default model if absent"),
    prefer: str | None = Header(None, description="`wait=S` (S <= 60): answer when done or after S s"),
    settings: Settings = Depends(get_settings),
    registry: Registry = Depends(get_registry),
    store: JobStore = Depends(get_store),
    producer=Depends(get_producer),
    waiter: Waiter = Depends(get_waiter),
) -> Job:
    """Validate and preprocess the image, record the job, enqueue it (202).

    With `Prefer: wait=S` the answer comes when the job is finished (200) or after S
    seconds (202, still queued or running)."""
    job = await run_in_threadpool(_enqueue, file, model, settings, registry, store, producer)
    response.headers["Location"] = f"/jobs/{job.id}"
    wait = _prefer_wait(prefer)
    if wait:
        response.headers["Preference-Applied"] = f"wait={wait:g}"
        job = await wait_for_job(job.id, wait, store, waiter) or job
        if job.status.terminal:
            response.status_code = status.HTTP_200_OK
    return job


@router.get("/jobs/{job_id}", response_model=Job, responses={404: {"model": Problem}})
async def get_job(
    job_id: str,
    wait: float = Query(0, ge=0, le=MAX_WAIT_SECONDS, description="Long-poll: wait up to S s for the end"),
    store: JobStore = Depends(get_store),
    waiter: Waiter = Depends(get_waiter),
) -> Job:
    job = await wait_for_job(job_id, wait, store, waiter)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r} (unknown, or expired)")
    return job

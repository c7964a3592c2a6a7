from fastapi import APIRouter, Depends, File, Form, HTTPException, Response, UploadFile, status

from api.deps import Settings, get_producer, get_registry, get_settings, get_store
from api.uploads import read_tensor, resolve_model
from shared.jobstore import JobStore
from shared.queue import INFER_TASK, encode_tensor
from shared.registry import Registry
from shared.schemas import Job, Problem

router = APIRouter(tags=["jobs"])

_ERRORS = {
    404: {"model": Problem, "description": "Unknown model"},
    413: {"model": Problem, "description": "Upload or image too large"},
    415: {"model": Problem, "description": "Not an image in a supported format"},
    422: {"model": Problem, "description": "Corrupt or empty image"},
    503: {"model": Problem, "description": "Queue unavailable; retry after Retry-After seconds"},
}


@router.post("/jobs", status_code=status.HTTP_202_ACCEPTED, response_model=Job, responses=_ERRORS)
def submit_job(
    response: Response,
    file: UploadFile = File(..., description="PNG, JPEG, WebP, BMP, GIF (first frame) or TIFF"),
    model: str | None = Form(None, description="'name' or 'name:version'; default model if absent"),
    settings: Settings = Depends(get_settings),
    registry: Registry = Depends(get_registry),
    store: JobStore = Depends(get_store),
    producer=Depends(get_producer),
) -> Job:
    """Validate and preprocess the image, record the job, enqueue it."""
    manifest = resolve_model(registry, model)
    tensor = read_tensor(file, manifest, settings.max_upload_bytes, settings.max_image_pixels)
    job = store.create(manifest)
    try:
        producer.send_task(
            INFER_TASK, args=[job.id, manifest.key, encode_tensor(tensor)], task_id=job.id
        )
    except Exception:
        # Never leave a queued record that no message will ever run.
        store.delete(job.id)
        raise
    response.headers["Location"] = f"/jobs/{job.id}"
    return job


@router.get("/jobs/{job_id}", response_model=Job, responses={404: {"model": Problem}})
def get_job(job_id: str, store: JobStore = Depends(get_store)) -> Job:
    job = store.get(job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r} (unknown, or expired)")
    return job

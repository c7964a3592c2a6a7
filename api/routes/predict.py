"""Synchronous endpoints for existing CIFAR-style `/predict` clients: enqueue, wait, answer."""

from fastapi import APIRouter, Depends, File, HTTPException, UploadFile, status
from fastapi.responses import JSONResponse

from api.deps import Services, services
from api.routes.jobs import wait_for_job
from api.submit import Options, submit
from api.uploads import read_upload
from shared.schemas import Job, JobStatus, Problem, SeedPrediction

router = APIRouter(tags=["predict"])


def _as_prediction(job: Job, labels: list[str]) -> SeedPrediction:
    probabilities = job.result.probabilities
    if probabilities is None:  # too many labels to store them all: the top-k, in label order
        scores = {item.label: item.score for item in job.result.top_k}
        probabilities = [scores.get(label, 0.0) for label in labels]
    return SeedPrediction(class_label=job.result.label, confidence=job.result.score,
                          probabilities=probabilities, job_id=job.id)


async def _finish(job: Job, svc: Services) -> SeedPrediction:
    """Wait for the job, then its prediction, or the HTTP error that says why not."""
    job = await wait_for_job(job.id, svc.settings.predict_timeout_seconds, svc.store, svc.waiter) or job
    if job.status == JobStatus.succeeded:
        return _as_prediction(job, svc.registry.resolve(f"{job.model.name}:{job.model.version}").labels)
    if not job.status.terminal:
        raise HTTPException(status.HTTP_504_GATEWAY_TIMEOUT,
                            f"no result within {svc.settings.predict_timeout_seconds:g}s; "
                            f"the job goes on: GET /jobs/{job.id}", headers={"Location": f"/jobs/{job.id}"})
    code = job.error.code if job.error else job.status.value
    message = job.error.message if job.error else "the job was cancelled"
    # A bad input is the client's; a model failure is ours.
    http = status.HTTP_500_INTERNAL_SERVER_ERROR if code == "inference_error" else status.HTTP_422_UNPROCESSABLE_CONTENT
    raise HTTPException(http, f"job {job.id} failed ({code}): {message}")


_ERRORS = {413: {"model": Problem}, 415: {"model": Problem}, 422: {"model": Problem},
           504: {"model": Problem, "description": "Timed out; the job id is in the detail and Location"}}


@router.post("/predict", response_model=SeedPrediction, responses=_ERRORS)
async def predict(file: UploadFile = File(...), svc: Services = Depends(services)) -> SeedPrediction:
    """The default model's answer for one image, synchronously (up to PREDICT_TIMEOUT_SECONDS)."""
    job, _ = await submit(read_upload(file, svc.settings.max_upload_bytes), Options(), svc)
    return await _finish(job, svc)


@router.post("/predict/batch", responses=_ERRORS)
async def predict_batch(files: list[UploadFile] = File(...), svc: Services = Depends(services)) -> JSONResponse:
    """`{"predictions": [...]}` in file order; a failed file gets `{"error": ..., "status_code": ...}`."""
    if len(files) > svc.settings.max_batch_files:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                            f"at most {svc.settings.max_batch_files} files per batch; got {len(files)}")
    jobs = []
    for upload in files:  # enqueue all first, so they batch together in the worker
        try:
            jobs.append((await submit(read_upload(upload, svc.settings.max_upload_bytes), Options(), svc))[0])
        except HTTPException as exc:
            jobs.append(exc)
    predictions = []
    for job in jobs:
        if isinstance(job, HTTPException):
            predictions.append({"error": job.detail, "status_code": job.status_code})
            continue
        try:
            predictions.append((await _finish(job, svc)).model_dump())
        except HTTPException as exc:
            predictions.append({"error": exc.detail, "status_code": exc.status_code, "job_id": job.id})
    return JSONResponse({"predictions": predictions})


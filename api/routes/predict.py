"""Synchronous endpoints for existing CIFAR-style `/predict` clients: enqueue, wait, answer."""

from typing import Annotated

from fastapi import APIRouter, File, HTTPException, UploadFile, status
from fastapi.responses import JSONResponse

from api.deps import BatchFilesDep, ServicesDep
from api.limits import MANY_FILES, ONE_FILE
from api.services import Services
from api.submit import SubmitOptions, submit
from api.uploads import read_upload
from shared.schemas import ErrorCode, Job, JobStatus, Prediction, Problem, SeedPrediction

router = APIRouter(tags=["predict"])


def _as_prediction(job_id: str, result: Prediction, labels: list[str]) -> SeedPrediction:
    probabilities = result.probabilities
    if probabilities is None:  # too many labels to store them all: the top-k, in label order
        scores = {item.label: item.score for item in result.top_k}
        probabilities = [scores.get(label, 0.0) for label in labels]
    return SeedPrediction(class_label=result.label, confidence=result.score,
                          probabilities=probabilities, job_id=job_id)


async def _finish(job: Job, svc: Services) -> SeedPrediction:
    """Wait for the job, then its prediction, or the HTTP error that says why not."""
    job = await svc.waiter.wait_for_job(svc.store, job.id, svc.settings.predict_timeout_seconds) or job
    if job.status == JobStatus.succeeded and job.result is not None:
        labels = svc.registry.resolve(f"{job.model.name}:{job.model.version}").labels
        return _as_prediction(job.id, job.result, labels)
    if not job.status.terminal:
        raise HTTPException(status.HTTP_504_GATEWAY_TIMEOUT,
                            f"no result within {svc.settings.predict_timeout_seconds:g}s; "
                            f"the job goes on: GET /jobs/{job.id}", headers={"Location": f"/jobs/{job.id}"})
    code = job.error.code.value if job.error else job.status.value
    message = job.error.message if job.error else "the job was cancelled"
    # A bad input is the client's; a model failure is ours.
    http = (status.HTTP_500_INTERNAL_SERVER_ERROR if code == ErrorCode.inference_error
            else status.HTTP_422_UNPROCESSABLE_CONTENT)
    raise HTTPException(http, f"job {job.id} failed ({code}): {message}")


_ERRORS: dict[int | str, dict] = {
    400: {"model": Problem, "description": "Malformed multipart body, or more parts than allowed"},
    413: {"model": Problem}, 415: {"model": Problem}, 422: {"model": Problem},
    504: {"model": Problem, "description": "Timed out; the job id is in the detail and Location"},
}


@router.post("/predict", response_model=SeedPrediction, responses=_ERRORS, **ONE_FILE)
async def predict(file: Annotated[UploadFile, File()], svc: ServicesDep) -> SeedPrediction:
    """The default model's answer for one image, synchronously (up to PREDICT_TIMEOUT_SECONDS)."""
    job, _ = await submit(read_upload(file, svc.settings.max_upload_bytes), SubmitOptions(), svc)
    return await _finish(job, svc)


@router.post("/predict/batch", responses=_ERRORS, **MANY_FILES)
async def predict_batch(files: BatchFilesDep, svc: ServicesDep) -> JSONResponse:
    """`{"predictions": [...]}` in file order; a failed file gets `{"error": ..., "status_code": ...}`."""
    jobs: list[Job | HTTPException] = []
    for upload in files:  # enqueue all first, so they batch together in the worker
        try:
            jobs.append((await submit(read_upload(upload, svc.settings.max_upload_bytes), SubmitOptions(), svc))[0])
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

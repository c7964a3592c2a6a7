"""Synchronous endpoints for existing CIFAR-style `/predict` clients: enqueue, wait, answer."""

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, File, HTTPException, Request, Response, UploadFile, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.auth import Caller, CallerDep, admit, caller, check_priority
from api.deps import BatchFilesDep, PriorityDep
from api.features import FeaturesPrediction, NamedFeaturesPrediction, PredictBody, feature_vector, json_route, parse
from api.limits import MANY_FILES, ONE_FILE
from api.openapi import BUSY, problems
from api.services import Services, ServicesDep
from api.submit import SubmitOptions, check_budget, prepare_upload, record, submit
from api.uploads import read_upload, resolve_model
from shared.registry import UnknownModel
from shared.schemas import ErrorCode, Job, JobStatus, Prediction, SeedPrediction

router = APIRouter(tags=["predict"], dependencies=[Depends(caller)])


def _as_prediction(job_id: str, result: Prediction, labels: list[str]) -> SeedPrediction:
    probabilities = result.probabilities
    if probabilities is None:  # too many labels to store them all: the top-k, in label order
        scores = {item.label: item.score for item in result.top_k}
        probabilities = [scores.get(label, 0.0) for label in labels]
    return SeedPrediction(class_label=result.label, confidence=result.score,
                          probabilities=probabilities, job_id=job_id,
                          calibrated_score=result.calibrated_score, in_distribution=result.in_distribution)


async def _finish(job: Job, svc: Services, caller: Caller) -> SeedPrediction:
    """Wait for the job, then its prediction, or the HTTP error that says why not."""
    job = await svc.waiter.wait_for_job(svc.store, job.id, svc.settings.predict_timeout_seconds, caller.key_id) or job
    if job.status == JobStatus.succeeded and job.result is not None:
        try:
            labels = svc.registry.resolve(f"{job.model.name}:{job.model.version}").labels
        except UnknownModel:  # the version was removed since it ran: its top labels, in score order
            labels = [item.label for item in job.result.top_k]
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


class FailedPrediction(BaseModel):
    """A file of /predict/batch that got no prediction: why, as /predict would have answered."""

    error: str
    status_code: int
    job_id: str | None = None  # absent when the file was refused before it became a job


class BatchPredictions(BaseModel):
    predictions: list[SeedPrediction | FailedPrediction]


_WHY = {403: "A priority above the key's max_priority: nothing was recorded",
        404: "Unknown model (a JSON body's `model`)",
        415: "Not an image in an accepted format; or a JSON body for a model that takes images",
        422: "A field failed validation (`errors` names each: a missing or unknown feature too), the image is "
             "empty, truncated or corrupt, or the job failed on invalid input",
        500: "Unexpected server error (logged), or the model failed on the image", 503: BUSY}


async def predict_features(request: Request, svc: ServicesDep, caller: CallerDep,
                           response: Response) -> SeedPrediction:
    """POST /predict with a JSON body (api.features): a features model's answer."""
    body = parse(await request.body(), FeaturesPrediction, NamedFeaturesPrediction)
    priority = check_priority(caller, body.priority)
    values = feature_vector(body, resolve_model(svc.registry, body.model))
    await admit(caller, svc, response)
    job, _ = await submit(values, SubmitOptions(model=body.model, priority=priority), svc, caller)
    return await _finish(job, svc, caller)


def add_json_routes(app: FastAPI) -> None:
    """POST /predict with a JSON body, added to the app itself before this router, so that
    JSON requests match it first (api.features.JsonBodyRoute); the form's route takes the others."""
    app.router.add_api_route("/predict", predict_features, methods=["POST"], response_model=SeedPrediction,
                             include_in_schema=False, dependencies=[Depends(caller)],
                             route_class_override=json_route(PredictBody))


@router.post("/predict", response_model=SeedPrediction, **ONE_FILE,
             responses=problems(400, 403, 404, 408, 413, 415, 422, 429, 503, 504, described=_WHY))
async def predict(file: Annotated[UploadFile, File()], priority: PriorityDep, svc: ServicesDep, caller: CallerDep,
                  response: Response) -> SeedPrediction:
    """The default model's answer for one image, synchronously (up to PREDICT_TIMEOUT_SECONDS).

    A model of kind `features` (GET /models) takes a JSON body instead (application/json):
    `{"model": "iris", "features": [5.1, 3.5, 1.4, 0.2]}`, or the numbers by name in
    `inputs`."""
    await admit(caller, svc, response)
    job, _ = await submit(read_upload(file, svc.settings.max_upload_bytes), SubmitOptions(priority=priority), svc,
                          caller)
    return await _finish(job, svc, caller)


@router.post("/predict/batch", **MANY_FILES,
             responses={200: {"model": BatchPredictions},
                        **problems(400, 403, 408, 413, 422, 429, 503, described={403: _WHY[403], 503: BUSY})})
async def predict_batch(files: BatchFilesDep, priority: PriorityDep, svc: ServicesDep, caller: CallerDep,
                        response: Response) -> JSONResponse:
    """`{"predictions": [...]}` in file order; a failed file gets `{"error": ..., "status_code": ...}`."""
    await check_budget(caller, svc, len(files))  # refused whole, before the rate is spent
    await admit(caller, svc, response, len(files))
    options = SubmitOptions(priority=priority)
    # Every file checked first, then all enqueued, so they batch together in the worker.
    prepared = [await prepare_upload(upload, options, svc, caller) for upload in files]
    jobs: list[Job | HTTPException] = []
    for ready in prepared:
        try:
            jobs.append(ready if isinstance(ready, HTTPException) else (await record(ready, options, svc, caller))[0])
        except HTTPException as exc:
            jobs.append(exc)
    predictions = []
    for job in jobs:
        if isinstance(job, HTTPException):
            predictions.append({"error": job.detail, "status_code": job.status_code})
            continue
        try:
            predictions.append((await _finish(job, svc, caller)).model_dump())
        except HTTPException as exc:
            predictions.append({"error": exc.detail, "status_code": exc.status_code, "job_id": job.id})
    return JSONResponse({"predictions": predictions}, headers=dict(response.headers))

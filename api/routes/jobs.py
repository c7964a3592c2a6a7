import re
from contextlib import nullcontext
from typing import Annotated, Any, Literal

from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    File,
    Header,
    HTTPException,
    Query,
    Request,
    Response,
    UploadFile,
    status,
)

from api.auth import Caller, CallerDep, admit, caller
from api.deps import (
    EVENTS_PATTERN,
    MAX_EXPIRES_IN,
    PRIORITY_DESCRIPTION,
    CancelAfterDep,
    IdempotencyKeyDep,
    SubmitOptionsDep,
    options_of,
)
from api.features import FeaturesJob, JobBody, NamedFeaturesJob, feature_vector, json_route, parse
from api.limits import ONE_FILE
from api.openapi import BUSY, JOB_LINKS, LOCATION, RATE_LIMIT, problems
from api.raw import RawBodyRoute, check_query, read_body
from api.reads import ReaderDep, long_poll, long_polls
from api.services import Services, ServicesDep
from api.submit import submit
from api.uploads import read_upload, resolve_model
from shared.schemas import Job, JobPage, JobStatus, Priority

router = APIRouter(tags=["jobs"], dependencies=[Depends(caller)])
MAX_WAIT_SECONDS = 60
# A next_cursor (a float's repr), never inf or nan: at most 17 digits, a 2-digit exponent.
CURSOR_PATTERN = r"^-?[0-9]{1,17}(\.[0-9]{1,24})?(e[+-]?[0-9]{1,2})?$"

_NO_JOB = {404: "No such job (unknown, or expired)"}
PRIORITY_REFUSED = "A priority above the key's max_priority: nothing was recorded"
_SUBMIT = problems(400, 403, 404, 408, 409, 413, 415, 422, 429, 503, described={
    403: PRIORITY_REFUSED, 404: "Unknown model", 503: BUSY,
    409: "The job of this Idempotency-Key has expired; use a new key",
    415: "Not an image in an accepted format, or an input of the wrong kind for the model (an image for a "
         "features model, features for an image model)",
    422: "A field failed validation (`errors` names each: a missing or unknown feature too); the image is "
         "empty, truncated or corrupt; or the Idempotency-Key was used with a different request"})
_CANCEL = problems(404, 409, 503, described={**_NO_JOB, 409: "Not queued: already running or finished"})
_QUEUED = {"description": "Queued: the job, at Location", "headers": {**LOCATION, **RATE_LIMIT}, "links": JOB_LINKS}
_FINAL = {"model": Job, "headers": {**LOCATION, **RATE_LIMIT}, "links": JOB_LINKS,
          "description": "Already final: a cached result, a replayed Idempotency-Key, or done within Prefer: wait"}


def long_poll_wait(until: str) -> Any:
    """The `wait` query parameter of a GET that can long-poll."""
    return Query(ge=0, le=MAX_WAIT_SECONDS, allow_inf_nan=False, description=f"Long-poll: wait up to S s for {until}")


def _prefer_wait(prefer: str | None) -> float:
    """RFC 7240 `Prefer: wait=S`, capped at MAX_WAIT_SECONDS."""
    match = re.search(r"(?:^|[,;\s])wait=(\d+(?:\.\d+)?)", prefer or "")
    return min(float(match.group(1)), MAX_WAIT_SECONDS) if match else 0.0


def _no_job(job_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r} (unknown, or expired)")


async def _answer(job: Job, created: bool, prefer: str | None, response: Response, svc: Services,
                  caller: Caller) -> Job:
    """A submission's answer: Location, and the job after `Prefer: wait`; 200 when final."""
    response.headers["Location"] = f"/jobs/{job.id}"
    wait = _prefer_wait(prefer)
    with long_polls.hold(caller.key_id, svc.settings.max_long_polls_per_key) if wait else nullcontext(False) as held:
        if held:  # else over the key's long-polls: answered at once (api.reads)
            response.headers["Preference-Applied"] = f"wait={wait:g}"
            job = await svc.waiter.wait_for_job(svc.store, job.id, wait, caller.key_id,
                                                known=job if created else None) or job
    if not created or job.status.terminal:
        response.status_code = status.HTTP_200_OK
    return job


def _prefer_header() -> Any:
    return Header(description=("RFC 7240: `wait=S` answers when the job is done or after S s (at most 60); "
                               "other preferences are ignored"))


async def submit_features_job(request: Request, response: Response, idempotency_key: IdempotencyKeyDep,
                              svc: ServicesDep, caller: CallerDep, cancel_after: CancelAfterDep,
                              prefer: Annotated[str | None, _prefer_header()] = None) -> Job:
    """POST /jobs with a JSON body (api.features): a features model's job, as the form's."""
    body = parse(await request.body(), FeaturesJob, NamedFeaturesJob)
    manifest = resolve_model(svc.registry, body.model)
    options = options_of(svc.settings, body.model, body.webhook_url, body.webhook_events, body.expires_in,
                         caller=caller, priority=body.priority, cancel_after=cancel_after)
    values = feature_vector(body, manifest)
    await admit(caller, svc, response)
    job, created = await submit(values, options, svc, caller, idempotency_key)
    return await _answer(job, created, prefer, response, svc, caller)


async def submit_raw_job(
    request: Request, response: Response, idempotency_key: IdempotencyKeyDep, svc: ServicesDep, caller: CallerDep,
    cancel_after: CancelAfterDep,
    model: str | None = None,
    webhook_url: str | None = None,
    webhook_events: Annotated[str | None, Query(pattern=EVENTS_PATTERN)] = None,
    expires_in: Annotated[float | None, Query(gt=0, le=MAX_EXPIRES_IN, allow_inf_nan=False)] = None,
    priority: Annotated[Priority, Query(description=PRIORITY_DESCRIPTION)] = Priority.normal,
    prefer: Annotated[str | None, _prefer_header()] = None,
) -> Job:
    """POST /jobs with the image as the body (api.raw), the form's options as query
    parameters: checked, and the rate spent, before a byte of the body is read."""
    check_query(request)
    options = options_of(svc.settings, model, webhook_url, webhook_events, expires_in, caller=caller,
                         priority=priority, cancel_after=cancel_after)
    await admit(caller, svc, response)
    data = await read_body(request, svc.settings.max_upload_bytes)
    job, created = await submit(data, options, svc, caller, idempotency_key, worker_decodes=True)
    return await _answer(job, created, prefer, response, svc, caller)


def add_json_routes(app: FastAPI) -> None:
    """POST /jobs with a JSON body (api.features) or a raw image (api.raw), added to the app
    itself before this router, so that those requests match them first (their route classes
    match on Content-Type); the form's route takes the others."""
    app.router.add_api_route("/jobs", submit_features_job, methods=["POST"], status_code=status.HTTP_202_ACCEPTED,
                             response_model=Job, include_in_schema=False, dependencies=[Depends(caller)],
                             route_class_override=json_route(JobBody))
    app.router.add_api_route("/jobs", submit_raw_job, methods=["POST"], status_code=status.HTTP_202_ACCEPTED,
                             response_model=Job, include_in_schema=False, dependencies=[Depends(caller)],
                             route_class_override=RawBodyRoute)


@router.post("/jobs", status_code=status.HTTP_202_ACCEPTED, response_model=Job, **ONE_FILE,
             responses={200: _FINAL, 202: _QUEUED, **_SUBMIT})
async def submit_job(
    response: Response,
    file: Annotated[UploadFile, File(description="PNG, JPEG, WebP, BMP, GIF (first frame) or TIFF")],
    options: SubmitOptionsDep,
    idempotency_key: IdempotencyKeyDep,
    svc: ServicesDep,
    caller: CallerDep,
    prefer: Annotated[str | None, _prefer_header()] = None,
) -> Job:
    """Validate and preprocess the image, record the job, enqueue it: 202 and the job.

    A model of kind `features` (GET /models) takes a JSON body instead (application/json):
    `{"model": "iris", "features": [5.1, 3.5, 1.4, 0.2]}`, or the numbers by name in
    `inputs`, with this form's options as fields.

    200 instead when the answer is already final: a cached result, a replayed
    Idempotency-Key, or a job that finished within `Prefer: wait=S`."""
    await admit(caller, svc, response)
    job, created = await submit(read_upload(file, svc.settings.max_upload_bytes), options, svc, caller,
                                idempotency_key, worker_decodes=True)
    return await _answer(job, created, prefer, response, svc, caller)


@router.get("/jobs", response_model=JobPage, responses=problems(403, 422, 429, 503))
async def list_jobs(
    svc: ServicesDep,
    caller: ReaderDep,
    status_filter: Annotated[JobStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN, description="next_cursor of the previous page")] = None,
    owner: Annotated[Literal["all"] | None, Query(description="`all`: every key's jobs (admin keys only)")] = None,
) -> JobPage:
    """The caller's recent jobs, newest first (created within FINISHED_JOB_TTL_SECONDS)."""
    if owner == "all" and not caller.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "owner=all needs an admin key")
    before = float(cursor) if cursor is not None else None  # finite: CURSOR_PATTERN
    jobs, next_score = await svc.store.recent(limit, before, status_filter,
                                              owner=None if owner == "all" else caller.key_id)
    return JobPage(jobs=jobs, next_cursor=repr(next_score) if next_score is not None else None)


@router.get("/jobs/{job_id}", response_model=Job, responses=problems(404, 422, 429, 503, described=_NO_JOB))
async def get_job(
    job_id: str,
    svc: ServicesDep,
    caller: ReaderDep,
    wait: Annotated[float, long_poll_wait("the end")] = 0,
) -> Job:
    with long_poll(caller, svc.settings.max_long_polls_per_key) if wait else nullcontext():
        job = await svc.waiter.wait_for_job(svc.store, job_id, wait, caller.key_id)
    if job is None:
        raise _no_job(job_id)
    return job


@router.delete("/jobs/{job_id}", response_model=Job, responses=_CANCEL)
async def cancel_job(job_id: str, svc: ServicesDep, caller: CallerDep) -> Job:
    """Cancel a queued job: the worker will skip it. A running or finished job answers 409."""
    cancelled = await svc.store.cancel(job_id, caller.key_id)
    if cancelled.before is None or cancelled.job is None:
        raise _no_job(job_id)
    if cancelled.before != JobStatus.queued:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"job {job_id} is {cancelled.before.value}; only a queued job can be cancelled")
    return cancelled.job  # its `completed` webhook, when asked for, was queued by the cancel script


router.add_api_route("/jobs/{job_id}/cancel", cancel_job, methods=["POST"], response_model=Job, responses=_CANCEL)

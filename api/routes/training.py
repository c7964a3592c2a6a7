"""Training a new version from a ZIP of images, one folder per label (README: Training a new
version). The archive is checked here (shared.archive: a refusal is a 4xx and nothing is
recorded or queued); then one job of kind `training` is recorded and its message queued on
TRAINING_QUEUE, in one script (create.lua), for the training worker (worker/training/app.py).

Admin keys only: a training job writes a version every key's requests may get."""

import asyncio
import base64
import json
from typing import Annotated, Literal, NamedTuple

from fastapi import APIRouter, Depends, File, Form, HTTPException, Response, UploadFile, status
from fastapi import Path as PathParam

from api.auth import Caller, CallerDep, admit, caller, over_budget, over_quota
from api.deps import EVENTS_PATTERN, options_of
from api.errors import reject
from api.limits import ONE_FILE
from api.openapi import JOB_LINKS, LOCATION, RATE_LIMIT, problems
from api.routes.models import NAME_PATTERN, admin
from api.services import Services, ServicesDep
from api.submit import SubmitOptions
from api.uploads import read_upload, resolve_model
from shared.archive import ArchiveRefused, Limits, read_archive
from shared.broker import training_message
from shared.jobstore import NewJob, new_job_id, new_record, to_job
from shared.registry import Manifest
from shared.schemas import Job, ModelRef

router = APIRouter(tags=["training"], dependencies=[Depends(caller), Depends(admin)])
TRAINING_QUEUE_FULL_RETRY_AFTER_SECONDS = 60

Activate = Literal["if_better", "always"]
_ANSWERS = {
    202: {"description": "Queued: the training job, at Location", "headers": {**LOCATION, **RATE_LIMIT},
          "links": JOB_LINKS},
    **problems(400, 403, 404, 408, 409, 413, 415, 422, 429, 503, described={
        403: "Training needs an admin key",
        404: "No such model (POST /models/{name}/versions); POST /models creates one",
        409: "A model of that name exists already (POST /models); add a version with POST /models/{name}/versions",
        413: "The ZIP is over TRAINING_MAX_UPLOAD_BYTES, expands beyond TRAINING_MAX_UNCOMPRESSED_BYTES, has "
             "more than TRAINING_MAX_FILES entries, is compressed more than TRAINING_MAX_RATIO:1 (a zip bomb), "
             "or holds an image over MAX_UPLOAD_BYTES or MAX_IMAGE_PIXELS",
        415: "The upload is not a ZIP archive",
        422: "A field failed validation; or the archive has an unsafe path (absolute, `..`, a drive letter), a "
             "symbolic link, an encrypted or duplicate entry, a file that is not an image, files outside "
             "<label>/<image>, fewer than 2 labels, or a label with fewer than TRAINING_MIN_IMAGES_PER_LABEL images",
        503: "Redis unreachable or full, or TRAINING_MAX_QUEUED_JOBS training jobs queued already: nothing was "
             "recorded; retry after Retry-After"}),
}


def _zip_file() -> object:
    return File(description="A ZIP of images, one folder per label: <label>/<image> (one top-level folder may "
                            "wrap them); at least 2 labels and TRAINING_MIN_IMAGES_PER_LABEL images each")


def _activate_field() -> object:
    return Form(description="`if_better` (default): the new version becomes the model's default only if its "
                            "held-out accuracy is at least the current default's; `always`: it does anyway")


def _webhook_url_field() -> object:
    return Form(description="POSTed the signed job record when the training job ends (as POST /jobs' webhooks)")


def _webhook_events_field() -> object:
    return Form(pattern=EVENTS_PATTERN, description="Comma-separated: completed (default), running")


class TrainingForm(NamedTuple):
    """What both training routes take besides the model's name."""

    file: UploadFile
    activate: Activate
    webhook_url: str | None
    webhook_events: str | None


def _training_form(
    file: Annotated[UploadFile, _zip_file()],
    activate: Annotated[Activate, _activate_field()] = "if_better",
    webhook_url: Annotated[str | None, _webhook_url_field()] = None,
    webhook_events: Annotated[str | None, _webhook_events_field()] = None,
) -> TrainingForm:
    return TrainingForm(file, activate, webhook_url, webhook_events)


TrainingFormDep = Annotated[TrainingForm, Depends(_training_form)]


@router.post("/models/{name}/versions", status_code=status.HTTP_202_ACCEPTED, response_model=Job, **ONE_FILE,
             responses=_ANSWERS)
async def train_version(
    response: Response,
    name: Annotated[str, PathParam(pattern=NAME_PATTERN, max_length=100)],
    form: TrainingFormDep,
    svc: ServicesDep,
    who: CallerDep,
) -> Job:
    """Admin: train the next version of model `name` from a ZIP of labelled images, as a job of
    kind `training` (202; poll GET /jobs/{id}: `progress` while it trains, the version written,
    its held-out accuracy and whether it was activated in `result`). It starts from the current
    default version (fine-tuned when the archive's labels are exactly its labels, else trained
    from scratch with the same input and preprocessing)."""
    await svc.versions.refresh()  # a version written a moment ago counts
    base = svc.registry.default_version(name)
    if base is None:
        raise reject(status.HTTP_404_NOT_FOUND, "unknown_model",
                     f"no model {name!r}; POST /models (form field `name`) creates one")
    return await _train(response, name, base, form, svc, who)


@router.post("/models", status_code=status.HTTP_202_ACCEPTED, response_model=Job, **ONE_FILE, responses=_ANSWERS)
async def train_model(
    response: Response,
    name: Annotated[str, Form(pattern=NAME_PATTERN, max_length=100, description="The new model's name")],
    form: TrainingFormDep,
    svc: ServicesDep,
    who: CallerDep,
) -> Job:
    """Admin: train a new model `name`, version 1, from a ZIP of labelled images, from scratch,
    taking its input and preprocessing from the default model (DEFAULT_MODEL: e.g. digits'
    8x8 grayscale, ink cropped); otherwise as POST /models/{name}/versions."""
    await svc.versions.refresh()
    if svc.registry.default_version(name) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"model {name!r} exists already; "
                                                      f"POST /models/{name}/versions trains its next version")
    template = resolve_model(svc.registry, None)
    return await _train(response, name, template, form, svc, who, new=True)


def _highest_version(svc: Services, name: str) -> int:
    numbers = [int(m.version) for m in svc.registry.manifests.values() if m.name == name and m.version.isdigit()]
    return max(numbers, default=0)


async def _train(response: Response, name: str, base: Manifest, form: TrainingForm, svc: Services, who: Caller,
                 new: bool = False) -> Job:
    settings, store = svc.settings, svc.store
    if base.input.kind != "image":
        raise reject(status.HTTP_422_UNPROCESSABLE_CONTENT, "not_an_image_model",
                     f"{base.key} takes features; training from a ZIP makes image models only")
    options = options_of(settings, None, form.webhook_url, form.webhook_events, None, caller=who)
    await admit(who, svc, response)
    data = read_upload(form.file, settings.training_max_upload_bytes)
    try:  # reads and verifies every entry: CPU and memory, off the event loop
        found = await asyncio.to_thread(read_archive, data, Limits.of(settings))
    except ArchiveRefused as exc:
        raise reject(exc.status, exc.reason, str(exc)) from exc
    job_id = new_job_id()
    # Atomic, and counting running jobs too (lua/training_slot.lua): concurrent POSTs cannot
    # overshoot. The worker releases the slot when it is done with the job (worker.training.app).
    hold = settings.job_ttl_seconds + settings.training_time_limit_seconds + settings.lease_seconds
    if not await store.take_training_slot(job_id, settings.training_max_queued_jobs, hold):
        raise reject(status.HTTP_503_SERVICE_UNAVAILABLE, "training_queue_full",
                     f"{settings.training_max_queued_jobs} training jobs are queued or running already "
                     "(TRAINING_MAX_QUEUED_JOBS); retry later", TRAINING_QUEUE_FULL_RETRY_AFTER_SECONDS)
    try:
        return await _record(response, name, base, form.activate, options, svc, who, new, job_id, found.labels,
                             data)
    except BaseException:  # nothing recorded (over quota, Redis full): the slot is free again
        await store.release_training_slot(job_id)
        raise


async def _record(response: Response, name: str, base: Manifest, activate: Activate, options: SubmitOptions,
                  svc: Services, who: Caller, new: bool, job_id: str, labels: dict[str, list[str]],
                  data: bytes) -> Job:
    """Record the training job holding its slot, and queue its message (create.lua)."""
    store, queue = svc.store, svc.settings.training_queue
    version = await store.reserve_version(name, _highest_version(svc, name))
    tag, message = training_message(svc.celery, queue, job_id)
    job_input = json.dumps({
        "name": name,
        "version": version,
        "activate": activate,
        "base": None if new else base.key,  # what it may fine-tune, and the default it must beat
        "template": base.key,  # whose input and preprocessing it takes
        "labels": {label: len(names) for label, names in labels.items()},
        "zip": base64.b64encode(data).decode("ascii"),
    })
    fields = new_record(ModelRef(name=name, version=version), job_id, input=job_input, tag=tag, owner=who.key_id,
                        webhook_url=options.webhook_url, webhook_events=options.webhook_events, kind="training")
    created = await store.create(NewJob(fields, message), queue, 0, who.max_active, fair=False,  # FIFO
                                 max_records=who.max_records)
    if created.active is not None:
        raise over_quota(who, created.active)
    if created.held is not None:
        raise over_budget(who, created.held, svc.settings.finished_job_ttl_seconds)
    assert created.fields is not None  # no Idempotency-Key, no backlog limit: recorded
    response.headers["Location"] = f"/jobs/{job_id}"
    return to_job(created.fields)

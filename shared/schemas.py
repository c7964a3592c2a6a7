"""The shapes that cross the wire: job records, predictions, model descriptions."""

from datetime import datetime
from enum import StrEnum
from http import HTTPStatus
from typing import Literal

from pydantic import BaseModel


class FieldError(BaseModel):
    field: str  # e.g. "expires_in", "wait", "file"
    message: str


class Problem(BaseModel):
    """Body of every 4xx/5xx answer: RFC 9457 problem details (`application/problem+json`)."""

    type: str = "about:blank"
    title: str  # the status's reason phrase
    status: int
    detail: str  # what went wrong, and what to do about it
    errors: list[FieldError] | None = None  # for a 422 on request validation: each bad field

    @classmethod
    def of(cls, status: int, detail: str, errors: list[FieldError] | None = None) -> "Problem":
        return cls(title=HTTPStatus(status).phrase, status=status, detail=detail, errors=errors)


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


class ModelRef(BaseModel):
    name: str
    version: str


class LabelScore(BaseModel):
    label: str
    score: float


class Prediction(BaseModel):
    label: str
    score: float
    top_k: list[LabelScore]
    # Every label's probability, for models with at most FULL_PROBABILITIES_MAX labels.
    probabilities: list[float] | None = None
    # The top label's probability after the manifest's temperature scaling (shared/calibration.py):
    # `score` itself for a model without a calibration.
    calibrated_score: float | None = None
    # False: the input looks unlike the model's training data (calibrated_score under the
    # manifest's measured threshold), whatever the label. None: the model has no calibration
    # (and results stored before calibration existed lack both fields).
    in_distribution: bool | None = None


FULL_PROBABILITIES_MAX = 100


class ErrorCode(StrEnum):
    """Why a job failed."""

    invalid_input = "invalid_input"  # its input does not fit the model
    invalid_image = "invalid_image"  # its image's header was good, its pixels could not be decoded (worker)
    inference_error = "inference_error"  # the model failed on it
    model_unavailable = "model_unavailable"  # no worker serves its model
    expired = "expired"  # its deadline (expires_in) passed before it ran
    worker_lost = "worker_lost"  # its worker (or its message) was lost while it ran, too often
    training_failed = "training_failed"  # a training job could not train, evaluate or write its version
    time_limit = "time_limit"  # a training job ran past TRAINING_TIME_LIMIT_SECONDS


class JobError(BaseModel):
    code: ErrorCode
    message: str


class Priority(StrEnum):
    """A job's lane (README: Fair share and priority lanes). Highest first."""

    high = "high"
    normal = "normal"
    low = "low"


LANES = (Priority.high, Priority.normal, Priority.low)  # the worker serves them in this order (mostly)


class WebhookEvent(StrEnum):
    completed = "completed"  # the job reached a terminal state
    running = "running"  # a worker started it


class WebhookState(BaseModel):
    status: Literal["pending", "delivered", "failed", "disabled"] = "pending"
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None


class TrainingProgress(BaseModel):
    """Where a running training job is (written after every epoch)."""

    stage: Literal["preparing", "training", "evaluating", "writing"]
    epoch: int = 0  # epochs done
    epochs: int = 0  # epochs planned
    loss: float | None = None
    accuracy: float | None = None  # on the training images, this epoch
    images: int = 0  # training images (the held-out ones are not among them)


class TrainingResult(BaseModel):
    """What a training job wrote: MODEL_DIR/<name>/<version>/, and whether it became the default."""

    version: str
    heldout_accuracy: float  # on the held-out images, never trained on
    heldout_size: int
    train_size: int
    labels: list[str]
    fine_tuned_from: str | None = None  # 'name:version' it continued from; None: trained from scratch
    activated: bool  # it is now the model's default version
    reason: str  # why it was (or was not) activated
    training_data_sha256: str


class Job(BaseModel):
    id: str
    # "training": POST /models/{name}/versions (its model: the version it writes); else "inference".
    kind: Literal["inference", "training"] = "inference"
    status: JobStatus
    model: ModelRef
    result: Prediction | None = None  # an inference job's answer
    progress: TrainingProgress | None = None  # training jobs only, once started
    training: TrainingResult | None = None  # a training job's outcome, once it succeeded
    error: JobError | None = None
    cached: bool = False
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = None
    webhook: WebhookState | None = None
    priority: Priority = Priority.normal  # the lane it was queued in (a job recorded before lanes: normal)


class Serves(BaseModel):
    """What a worker serves: the models it loaded, and those that failed to load, with why."""

    models: list[str] = []
    failed: dict[str, str] = {}


class WorkerInfo(Serves):
    name: str


class ModelInfo(BaseModel):
    name: str
    version: str
    # What the model takes: "image" (an upload, resized to input_shape: height, width,
    # channels), or "features" (a JSON body of numbers, one per feature_names entry;
    # input_shape is then [their count]).
    kind: Literal["image", "features"]
    input_shape: list[int]
    feature_names: list[str] | None = None  # "features" only: the names, in the model's order
    labels: int  # how many (kept a count, as first published); their names: label_names
    label_names: list[str]  # in the model's output order: what a result's `label` can be
    default: bool  # the version a request naming no model gets (DEFAULT_MODEL's default version)
    # serving: a live worker has it loaded; failed: it failed to load on a live worker (and
    # none serves it); unavailable: no live worker serves it (scaled to zero, or starting).
    status: Literal["serving", "failed", "unavailable"]
    error: str | None = None
    # The version a request naming only the model (`name`) gets: the one an admin made its
    # default (POST /models/{name}/default), else its newest.
    default_version: bool = False


class JobPage(BaseModel):
    jobs: list[Job]
    next_cursor: str | None = None


class BatchItem(BaseModel):
    index: int
    filename: str | None = None
    job: Job | None = None
    error: Problem | None = None
    status_code: int


class BatchResponse(BaseModel):
    items: list[BatchItem]
    # The batch's handle, GET /batches/{id}: None when no file was accepted.
    batch_id: str | None = None


class Batch(BaseModel):
    """GET /batches/{id}: the batch's jobs counted by status, and a page of them in order."""

    id: str
    created_at: datetime
    total: int  # jobs in the batch
    counts: dict[JobStatus, int]  # every status, zeros included (a record gone counts nowhere)
    done: bool  # every job terminal (or its record gone)
    jobs: list[Job]
    next_offset: int | None = None  # the next page's offset, when more jobs follow


class SeedPrediction(BaseModel):
    """The shape synchronous CIFAR-style /predict clients expect."""

    class_label: str
    confidence: float
    probabilities: list[float]
    job_id: str
    calibrated_score: float | None = None  # as a job result's
    in_distribution: bool | None = None  # as a job result's

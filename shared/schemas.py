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


FULL_PROBABILITIES_MAX = 100


class ErrorCode(StrEnum):
    """Why a job failed."""

    invalid_input = "invalid_input"  # its input does not fit the model
    inference_error = "inference_error"  # the model failed on it
    model_unavailable = "model_unavailable"  # no worker serves its model
    expired = "expired"  # its deadline (expires_in) passed before it ran
    worker_lost = "worker_lost"  # its worker (or its message) was lost while it ran, too often


class JobError(BaseModel):
    code: ErrorCode
    message: str


class WebhookEvent(StrEnum):
    completed = "completed"  # the job reached a terminal state
    running = "running"  # a worker started it


class WebhookState(BaseModel):
    status: Literal["pending", "delivered", "failed", "disabled"] = "pending"
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None


class Job(BaseModel):
    id: str
    status: JobStatus
    model: ModelRef
    result: Prediction | None = None
    error: JobError | None = None
    cached: bool = False
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = None
    webhook: WebhookState | None = None


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
    # channels) for every model today; a manifest may later declare other kinds.
    kind: Literal["image"]
    input_shape: tuple[int, int, int]
    labels: int  # how many (kept a count, as first published); their names: label_names
    label_names: list[str]  # in the model's output order: what a result's `label` can be
    default: bool
    # serving: a live worker has it loaded; failed: it failed to load on a live worker (and
    # none serves it); unavailable: no live worker serves it (scaled to zero, or starting).
    status: Literal["serving", "failed", "unavailable"]
    error: str | None = None


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

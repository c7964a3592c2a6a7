"""The shapes that cross the wire: job records, predictions, model descriptions."""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel


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


class JobError(BaseModel):
    code: str
    message: str


class Job(BaseModel):
    id: str
    status: JobStatus
    model: ModelRef
    result: Prediction | None = None
    error: JobError | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class ModelInfo(BaseModel):
    name: str
    version: str
    input_shape: tuple[int, int, int]
    labels: int
    default: bool


class Problem(BaseModel):
    """Body of every 4xx/5xx answer."""

    detail: str

"""Typed errors: each carries the server's status and message (its RFC 9457 problem)."""

from typing import Any

from shared.schemas import Job, Problem


class QIError(Exception):
    """Anything this client raises on purpose."""


class APIError(QIError):
    """The server answered an error: `status`, `detail` (its message) and the whole `problem`."""

    def __init__(self, status: int, detail: str, problem: Problem | None = None, retry_after: float | None = None):
        super().__init__(f"{status}: {detail}")
        self.status, self.detail, self.problem, self.retry_after = status, detail, problem, retry_after


class BadRequest(APIError):
    """400, 413, 415, 422: the request (or its image) was refused; sending it again will not help."""


class Unauthorized(APIError):
    """401 (no key, or an unknown or revoked one) or 403."""


class NotFound(APIError):
    """404: no such job, batch or model (or not the caller's)."""


class Conflict(APIError):
    """409: e.g. cancelling a job that is no longer queued."""


class RateLimited(APIError):
    """429: over the key's rate or quota; `retry_after` in seconds."""


class Unavailable(APIError):
    """503 (Redis unreachable or full, the queue full) or another 5xx; `retry_after` when given."""


class JobFailed(QIError):
    """`run` on a job that failed (`job.error` says why) or was cancelled."""

    def __init__(self, job: Job):
        reason = f"{job.error.code}: {job.error.message}" if job.error else job.status.value
        super().__init__(f"job {job.id} {job.status.value}: {reason}")
        self.job = job


class WaitTimeout(QIError):
    """`wait(id, timeout)` ran out of time; `job` is the job as last seen."""

    def __init__(self, job: Job):
        super().__init__(f"job {job.id} still {job.status.value}")
        self.job = job


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest, 401: Unauthorized, 403: Unauthorized, 404: NotFound, 409: Conflict, 413: BadRequest,
    415: BadRequest, 422: BadRequest, 429: RateLimited,
}


def error_for(status: int, body: Any, retry_after: float | None = None) -> APIError:
    """The typed error for an answer's status and its (JSON) body, or a problem in a batch item."""
    problem = None
    if isinstance(body, dict) and "status" in body and "detail" in body:
        try:
            problem = Problem.model_validate(body)
        except ValueError:
            problem = None
    detail = problem.detail if problem else str(body)[:500]
    cls = _BY_STATUS.get(status, Unavailable if status >= 500 else APIError)
    return cls(status, detail, problem, retry_after)

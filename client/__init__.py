"""Python client of the queue-inference API: `Client` (blocking) and `AsyncClient`.

    from client import Client
    with Client() as qi:                       # QI_URL / QI_API_KEY, else make run's
        print(qi.run("models/digits/examples/3.png").label)
        for path, job in qi.map(paths):        # batches, retries, no double submissions
            ...

Results are the server's own pydantic models (shared.schemas: Job, Prediction, ...), errors
are typed (client.errors). Light: httpx, pydantic and standardwebhooks; no TensorFlow,
FastAPI, Celery or Redis.
"""

from client.aio import AsyncClient
from client.errors import (
    APIError,
    BadRequest,
    Conflict,
    JobFailed,
    NotFound,
    QIError,
    RateLimited,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)
from client.sync import Client
from client.webhooks import InvalidWebhook, verify_webhook
from shared.schemas import Batch, Job, JobStatus, ModelInfo, Prediction

__all__ = [
    "APIError", "AsyncClient", "BadRequest", "Batch", "Client", "Conflict", "InvalidWebhook", "Job", "JobFailed",
    "JobStatus", "ModelInfo", "NotFound", "Prediction", "QIError", "RateLimited", "Unauthorized", "Unavailable",
    "WaitTimeout", "verify_webhook",
]

"""What the sync and async clients share: settings, inputs, answers and retry timing (no I/O)."""

import io
import json
import math
import os
import random
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from client.errors import APIError, error_for
from shared.schemas import Job, Problem

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_OPS_PORT = 9000
KEY_FILE = Path(".run") / "api-key"  # what `make run` writes
MAX_WAIT = 60  # the server's longest long-poll
MAX_BATCH = 64  # MAX_BATCH_FILES
RETRY_STATUSES = (429, 503)
# Per-item errors of a batch worth resubmitting (nothing was recorded for them).
RETRY_ITEM_STATUSES = (429, 503)


def default_url(url: str | None) -> str:
    return (url or os.environ.get("QI_URL") or DEFAULT_URL).rstrip("/")


def default_key(api_key: str | None) -> str | None:
    if api_key:
        return api_key
    if os.environ.get("QI_API_KEY"):
        return os.environ["QI_API_KEY"]
    return KEY_FILE.read_text().strip() if KEY_FILE.is_file() else None


def default_ops_url(ops_url: str | None, url: str) -> str | None:
    """QI_OPS_URL, else port 9000 of a loopback API (as `make run` serves it), else None."""
    if ops_url or os.environ.get("QI_OPS_URL"):
        return (ops_url or os.environ["QI_OPS_URL"]).rstrip("/")
    host = urlsplit(url).hostname or ""
    return f"http://{host}:{DEFAULT_OPS_PORT}" if host in ("127.0.0.1", "localhost", "::1") else None


def headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def read_image(image: Any) -> tuple[str, bytes]:
    """(filename, bytes) of a path, bytes, a binary file object or a PIL image."""
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        return path.name, path.read_bytes()
    if isinstance(image, bytes | bytearray | memoryview):
        return "image", bytes(image)
    if hasattr(image, "read"):
        data = image.read()
        return Path(str(getattr(image, "name", "image"))).name, data.encode() if isinstance(data, str) else data
    if hasattr(image, "save") and type(image).__module__.startswith("PIL"):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return "image.png", buffer.getvalue()
    raise TypeError(f"not an image: {type(image).__name__} (a path, bytes, a file object or a PIL image)")


def submit_form(model: str | None, webhook_url: str | None, webhook_events: Sequence[str] | None,
                expires_in: float | None, priority: str | None = None) -> dict[str, str]:
    form = {"model": model, "webhook_url": webhook_url, "expires_in": None if expires_in is None else repr(expires_in),
            "webhook_events": ",".join(webhook_events) if webhook_events else None, "priority": priority}
    return {name: value for name, value in form.items() if value is not None}


def submit_headers(idempotency_key: str, cancel_after: str | None, raw: bool = False) -> dict[str, str]:
    """A submission's headers: its Idempotency-Key, Cancel-After (`30s`, `1h30m`, ...) if
    given, and with `raw` the raw body's Content-Type. One image goes as the body itself,
    its options as query parameters (the server's api.raw): no multipart to build or parse,
    the cheaper way in on both sides (the server reads what the image is from its bytes)."""
    return {"Idempotency-Key": idempotency_key, **({"Content-Type": RAW_TYPE} if raw else {}),
            **({"Cancel-After": cancel_after} if cancel_after else {})}


RAW_TYPE = "application/octet-stream"


def new_idempotency_key() -> str:
    return "qi-" + uuid.uuid4().hex


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.strip().replace(".", "", 1).isdigit() else None


def check(response: httpx.Response) -> Any:
    """The answer's JSON, or its typed error."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if response.status_code >= 400:
        raise error_for(response.status_code, body, retry_after(response))
    return body


def item_error(status: int, problem: Problem | None) -> APIError:
    return error_for(status, problem.model_dump() if problem else {})


def backoff(attempt: int, hint: float | None = None, cap: float = 30.0) -> float:
    """Seconds before retry number `attempt` (1, 2, ...): Retry-After when given, else
    exponential with full jitter."""
    if hint is not None:
        return min(max(hint, 0.0), cap)
    return random.uniform(0.5, 1.0) * min(cap, 0.25 * 2 ** (attempt - 1))


def chunk_size(total: int | None, concurrency: int) -> int:
    """Inputs per batch request: spread over `concurrency` requests, at most MAX_BATCH."""
    if total is None:
        return 16
    return max(1, min(MAX_BATCH, math.ceil(total / max(concurrency, 1))))


def describe(job: Job) -> str:
    return json.dumps(job.model_dump(mode="json"))

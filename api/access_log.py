"""The access log: one JSON line per request on the `api.access` logger (stderr, the line
alone), and a request id echoed in `X-Request-ID` on every answer.

    {"time": "2026-11-24T10:01:02.345Z", "method": "POST", "path": "/jobs", "status": 202,
     "duration_ms": 12.3, "request_id": "3f2c...", "key_id": null, "job_id": "83ba..."}

- `request_id`: the client's `X-Request-ID` when it is a sane token (1 to 64 characters of
  `A-Za-z0-9._-`), else a new one (uuid4 hex); routes find it in `request.state.request_id`.
- `key_id`: `request.state.key_id`, set by authentication; the key itself is never logged
  (nothing of the request's headers is, but its X-Request-ID).
- `job_id`: `request.state.job_id` where a route sets it, else the `job_id` path parameter,
  else the job a `Location: /jobs/{id}` answer names (a submission's 202, a 504).
- `status`: null when no answer was sent (the client went away first).

AccessLog wraps the whole app, Starlette's 500 handler included (api.main.PublicApp), so
413s from api.limits, problems from api.errors and 500s all carry the header and a line.
"""

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("api.access")
HEADER = "X-Request-ID"
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
_JOB_LOCATION = re.compile(r"/jobs/([^/?#]+)")


def configure() -> None:
    """Lines go to stderr as they are (JSON, no level or logger prefix); the level follows
    LOG_LEVEL (the root logger's)."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.propagate = False


def request_id(headers: list[tuple[bytes, bytes]]) -> str:
    given = next((value for name, value in headers if name == b"x-request-id"), b"")
    return given.decode() if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


class AccessLog:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        rid = request_id(scope["headers"])
        state: dict[str, Any] = scope.setdefault("state", {})  # request.state
        state["request_id"] = rid
        status: int | None = None
        location: str | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, location
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                headers[HEADER] = rid
                location = headers.get("location")
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.info(json.dumps({
                "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                "request_id": rid,
                "key_id": state.get("key_id"),
                "job_id": _job_id(scope, state, location),
            }, default=str))


def _job_id(scope: Scope, state: dict[str, Any], location: str | None) -> str | None:
    job_id = state.get("job_id") or scope.get("path_params", {}).get("job_id")
    if job_id is None and location:
        found = _JOB_LOCATION.fullmatch(location)
        job_id = found and found.group(1)
    return str(job_id) if job_id else None

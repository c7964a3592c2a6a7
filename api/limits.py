"""How big a request may be (the body, declared or streamed, and its multipart parts), and
how long its body may stall."""

import asyncio
import re
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem
from api.metrics import REJECTED
from shared.settings import Settings, get_settings

# Multipart framing and the small form fields on top of the file(s).
FORM_OVERHEAD = 64 * 1024
_settings = get_settings()
# Multipart limits per route (FastAPI's form_limits): beyond them the form is not parsed (400).
ONE_FILE: dict[str, Any] = {"form_limits": {"max_files": 1, "max_fields": 8, "max_part_size": FORM_OVERHEAD}}
MANY_FILES: dict[str, Any] = {
    "form_limits": {"max_files": _settings.max_batch_files, "max_fields": 8, "max_part_size": FORM_OVERHEAD},
}


# The training routes (api/routes/training.py) take one ZIP of up to TRAINING_MAX_UPLOAD_BYTES.
TRAINING_PATH = re.compile(r"^/models(?:/[^/]+/versions)?$")


def too_big(max_bytes: int) -> str:
    return f"upload is larger than the limit of {max_bytes} bytes"


class LimitBody:
    """413 for a body over the limit (MAX_UPLOAD_BYTES, or MAX_BATCH_BYTES for /…/batch):
    at once when its Content-Length says so, before anything is read; otherwise as soon as
    the bytes that arrived pass it (chunked bodies declare no length). 408 for a body that
    stalls: a client that declares a body and never sends it would hold its connection."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.max_bytes, self.max_batch_bytes = settings.max_upload_bytes, settings.max_batch_bytes
        self.max_training_bytes = settings.training_max_upload_bytes
        self.stall = settings.body_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_batch_bytes if scope["path"].endswith("/batch") else self.max_bytes
        if TRAINING_PATH.match(scope["path"]):
            limit = self.max_training_bytes
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
            REJECTED.labels("too_large").inc()
            return await problem(413, too_big(limit))(scope, receive, send)
        received = 0

        async def counted() -> Message:
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), self.stall)
            except TimeoutError:
                REJECTED.labels("body_timeout").inc()
                raise HTTPException(408, f"the request body stalled: no bytes for {self.stall:g} s") from None
            received += len(message.get("body", b""))
            if received > limit + FORM_OVERHEAD:
                REJECTED.labels("too_large").inc()
                raise HTTPException(413, too_big(limit))  # FastAPI re-raises it from the form parser
            return message

        await self.app(scope, counted, send)

"""How big a request may be (the body, declared or streamed, and its multipart parts), how
long its body may stall and take in all, and how many bodies are received at once."""

import asyncio
import re
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import RETRY_AFTER_SECONDS, problem
from api.metrics import BODIES, REJECTED
from shared.settings import Settings, get_settings

# On a refusal with the body unread: uvicorn would otherwise read the rest and throw it away.
CLOSE = {"Connection": "close"}
# Multipart framing and the small form fields on top of the file(s).
FORM_OVERHEAD = 64 * 1024
# A body declared this small arrives in one read of uvicorn's buffer (64 KiB) and holds no more:
# MAX_BODIES counts only larger ones (and chunked), so a burst of small submissions is never refused.
SMALL_BODY = 64 * 1024
_settings = get_settings()
# Multipart limits per route (FastAPI's form_limits): beyond them the form is not parsed (400).
ONE_FILE: dict[str, Any] = {"form_limits": {"max_files": 1, "max_fields": 8, "max_part_size": FORM_OVERHEAD}}
MANY_FILES: dict[str, Any] = {
    "form_limits": {"max_files": _settings.max_batch_files, "max_fields": 8, "max_part_size": FORM_OVERHEAD},
}


# The training routes (api/routes/training.py) take one ZIP of up to TRAINING_MAX_UPLOAD_BYTES.
TRAINING_PATH = re.compile(r"^/models(?:/[^/]+/versions)?$")


def declares_body(headers: dict[bytes, bytes], over: int = 0) -> bool:
    """Content-Length over `over` bytes, or a chunked body (which declares no length)."""
    length = headers.get(b"content-length", b"")
    return (length.isdigit() and int(length) > over) or b"chunked" in headers.get(b"transfer-encoding", b"").lower()


def too_big(max_bytes: int) -> str:
    return f"upload is larger than the limit of {max_bytes} bytes"


class Bodies:
    """Request bodies being received on this process: per client address and in all. In
    memory, per API process (each replica has its own)."""

    def __init__(self, per_client: int, total: int):
        self.per_client, self.total = per_client, total
        self.receiving = 0
        self.by_client: dict[str, int] = {}  # only clients with a body arriving

    def take(self, client: str) -> str | None:
        """Count one more body from `client`; or, over a bound, why not (nothing counted)."""
        if self.receiving >= self.total:
            return f"the API is receiving {self.total} request bodies already, its limit"
        if self.by_client.get(client, 0) >= self.per_client:
            return f"your address is sending {self.per_client} request bodies already, its limit"
        self.receiving += 1
        BODIES.inc()
        self.by_client[client] = self.by_client.get(client, 0) + 1
        return None

    def give_back(self, client: str) -> None:
        self.receiving -= 1
        BODIES.dec()
        left = self.by_client[client] - 1
        if left:
            self.by_client[client] = left
        else:
            del self.by_client[client]


class LimitBody:
    """413 for a body over the limit (MAX_UPLOAD_BYTES, or MAX_BATCH_BYTES for /…/batch):
    at once when its Content-Length says so, before anything is read; otherwise as soon as
    the bytes that arrived pass it (chunked bodies declare no length). 408 for a body that
    stalls (BODY_TIMEOUT_SECONDS between bytes) or is still arriving BODY_DEADLINE_SECONDS
    after the request began: a client that trickles a body would hold its connection (and
    its part of MAX_BODIES) for as long as it liked. 503 + Retry-After, before reading, for
    a body (over SMALL_BODY, or chunked) beyond MAX_BODIES_PER_CLIENT from one address or
    MAX_BODIES in all: each holds up to its limit in memory or in the temp dir while it arrives. Every refusal with the
    body unread closes the connection (uvicorn would otherwise read the rest and drop it)."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.max_bytes, self.max_batch_bytes = settings.max_upload_bytes, settings.max_batch_bytes
        self.max_training_bytes = settings.training_max_upload_bytes
        self.stall, self.deadline = settings.body_timeout_seconds, settings.body_deadline_seconds
        self.bodies = Bodies(settings.max_bodies_per_client, settings.max_bodies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_batch_bytes if scope["path"].endswith("/batch") else self.max_bytes
        if TRAINING_PATH.match(scope["path"]):
            limit = self.max_training_bytes
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
            REJECTED.labels("too_large").inc()
            return await problem(413, too_big(limit), CLOSE)(scope, receive, send)
        client = scope["client"][0] if scope.get("client") else ""
        counts = declares_body(headers, SMALL_BODY)  # towards MAX_BODIES
        if counts and (busy := self.bodies.take(client)):
            REJECTED.labels("bodies").inc()
            return await problem(503, f"{busy}; retry shortly", {"Retry-After": str(RETRY_AFTER_SECONDS), **CLOSE})(
                scope, receive, send)
        deadline = time.monotonic() + self.deadline
        received, receiving = 0, True

        def done() -> None:
            nonlocal receiving
            if receiving:
                receiving = False
                if counts:
                    self.bodies.give_back(client)

        async def counted() -> Message:
            nonlocal received
            if not receiving:  # the whole body is in: what follows is http.disconnect
                return await receive()
            left = deadline - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), min(self.stall, max(left, 0)))
            except TimeoutError:
                done()
                if left <= self.stall:
                    REJECTED.labels("body_deadline").inc()
                    raise HTTPException(408, f"the request body took longer than {self.deadline:g} s in all; send "
                                             "it faster, or smaller", CLOSE) from None
                REJECTED.labels("body_timeout").inc()
                raise HTTPException(408, f"the request body stalled: no bytes for {self.stall:g} s", CLOSE) from None
            received += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False):
                done()
            if received > limit + FORM_OVERHEAD:
                done()
                REJECTED.labels("too_large").inc()
                raise HTTPException(413, too_big(limit), CLOSE)  # FastAPI re-raises it from the form parser
            return message

        try:
            await self.app(scope, counted, send)
        finally:
            done()

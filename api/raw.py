"""POST /jobs with the image itself as the body, as Triton, TF Serving and SageMaker take
binary bodies: `Content-Type: image/png` (any `image/*`) or `application/octet-stream`,
the options as query parameters (`?model=digits&priority=high`), the headers as the form's
(Idempotency-Key, Cancel-After, Prefer). No multipart framing to build or parse: the
cheaper way in, which the client and `qi` use.

A `RawBodyRoute` (hidden, registered before the form's route of the same path, like
api.features' JSON route) takes the requests whose Content-Type is raw; api.openapi
documents the body on the visible operation. The bytes, not the Content-Type, decide what
the image is: a mislabelled PNG is a PNG; a body that is no image is the form's 415/422.
"""

from typing import Any

from fastapi import Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Scope

from api.errors import reject
from api.limits import too_big

OCTET_STREAM = b"application/octet-stream"
# What api.openapi documents; any other image/* is taken too (the bytes decide).
DOCUMENTED_TYPES = ("image/png", "image/jpeg", "image/webp", "image/bmp", "image/gif", "image/tiff",
                    "application/octet-stream")
# The form's fields, as query parameters: any other is a 422 (a misspelt option is not ignored).
OPTIONS = ("model", "webhook_url", "webhook_events", "expires_in", "priority")


def is_raw(scope: Scope) -> bool:
    """`image/*` or `application/octet-stream` (parameters such as `; charset` ignored)."""
    for name, value in scope.get("headers") or ():
        if name == b"content-type":
            media_type = value.split(b";", 1)[0].strip().lower()
            return media_type == OCTET_STREAM or media_type.startswith(b"image/")
    return False


class RawBodyRoute(APIRoute):
    """A route that matches only requests with a raw image body; any other request goes on
    to the form route (or the JSON route) of the same path, as before."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or not is_raw(scope):
            return Match.NONE, {}
        return super().matches(scope)


def check_query(request: Request, known: tuple[str, ...] = OPTIONS) -> None:
    """422 naming each query parameter the raw route does not take."""
    unknown = sorted(set(request.query_params) - set(known))
    if unknown:
        message = f"unknown query parameter; a raw-body POST /jobs takes {', '.join(known)}"
        raise RequestValidationError([{"type": "extra_forbidden", "loc": ("query", name), "msg": message}
                                      for name in unknown])


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, at most `max_bytes` (413 past it: api.limits has already refused a
    declared length over the limit; this holds for chunked bodies too); 422 when empty."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise reject(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "too_large", too_big(max_bytes))
        chunks.append(chunk)
    if not size:
        raise reject(status.HTTP_422_UNPROCESSABLE_CONTENT, "empty", "the request body is empty: send the image")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def documented_body(description: str) -> dict[str, Any]:
    """The raw content types of the visible operation's requestBody (api.openapi)."""
    return {media_type: {"schema": {"type": "string", "format": "binary", "description": description}}
            for media_type in DOCUMENTED_TYPES}

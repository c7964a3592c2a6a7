"""Upload validation: everything a client can get wrong is refused here, before the queue."""

import numpy as np
from fastapi import HTTPException, UploadFile, status
from fastapi.responses import JSONResponse

from api.metrics import REJECTED
from shared.preprocessing import (
    ImageTooLarge,
    InvalidImage,
    UnsupportedFormat,
    pixels_of,
)
from shared.registry import Manifest, Registry, UnknownModel

# Multipart framing and small form fields on top of the file itself.
_FORM_OVERHEAD = 64 * 1024


class LimitUploadSize:
    """Refuse a body whose Content-Length is over the limit before it is read or parsed.

    Bodies without a Content-Length (chunked) are still checked once read, per file.
    """

    def __init__(self, app, max_bytes: int, max_batch_bytes: int):
        self.app = app
        self.max_bytes = max_bytes
        self.max_batch_bytes = max_batch_bytes  # /…/batch bodies carry several files

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            declared = dict(scope["headers"]).get(b"content-length", b"")
            limit = self.max_batch_bytes if scope["path"].endswith("/batch") else self.max_bytes
            if declared.isdigit() and int(declared) > limit + _FORM_OVERHEAD:
                REJECTED.labels("too_large").inc()
                response = JSONResponse({"detail": _too_big(limit)}, status_code=413)
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


def _too_big(max_bytes: int) -> str:
    return f"upload is larger than the limit of {max_bytes} bytes"


def reject(status_code: int, reason: str, detail: str) -> HTTPException:
    REJECTED.labels(reason).inc()
    return HTTPException(status_code, detail)


def resolve_model(registry: Registry, ref: str | None) -> Manifest:
    try:
        return registry.resolve(ref)
    except UnknownModel as exc:
        raise reject(status.HTTP_404_NOT_FOUND, "unknown_model", str(exc)) from exc


def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    data = upload.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise reject(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "too_large", _too_big(max_bytes))
    if not data:
        raise reject(status.HTTP_422_UNPROCESSABLE_CONTENT, "empty", "the uploaded file is empty")
    return data


def to_pixels(data: bytes, manifest: Manifest, max_pixels: int) -> np.ndarray:
    try:
        return pixels_of(data, manifest, max_pixels)
    except ImageTooLarge as exc:
        raise reject(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "too_many_pixels", str(exc)) from exc
    except UnsupportedFormat as exc:
        raise reject(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "unsupported_format", str(exc)) from exc
    except InvalidImage as exc:
        raise reject(status.HTTP_422_UNPROCESSABLE_CONTENT, "invalid_image", str(exc)) from exc

"""Upload validation: everything a client can get wrong is refused here, before the queue."""

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from fastapi import UploadFile, status
from PIL import Image

from api.errors import reject
from api.limits import too_big
from shared.preprocessing import (
    ImageTooLarge,
    InvalidImage,
    UnsupportedFormat,
    open_image,
    to_pixels,
)
from shared.registry import Manifest, Registry, UnknownModel


def resolve_model(registry: Registry, ref: str | None) -> Manifest:
    try:
        return registry.resolve(ref)
    except UnknownModel as exc:
        raise reject(status.HTTP_404_NOT_FOUND, "unknown_model", str(exc)) from exc


def takes(manifest: Manifest, kind: str) -> None:
    """415 when the model takes the other kind of input, saying how to send it."""
    if manifest.input.kind == kind:
        return
    if manifest.input.kind == "features":
        names = manifest.input.names or []
        raise reject(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "wrong_input_kind",
                     f"model {manifest.key} takes features, not an image: send a JSON body (application/json) "
                     f"with `model` and either `features` ({len(names)} numbers: {', '.join(names)}) or `inputs` "
                     "(each by name)")
    raise reject(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "wrong_input_kind",
                 f"model {manifest.key} takes an image, not features: send it as multipart/form-data "
                 "with the image in a `file` part")


def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    data = upload.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise reject(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "too_large", too_big(max_bytes))
    if not data:
        raise reject(status.HTTP_422_UNPROCESSABLE_CONTENT, "empty", "the uploaded file is empty")
    return data


def open_upload(data: bytes, max_pixels: int) -> Image.Image:
    """The upload's header, checked (cheap: no pixel is decompressed)."""
    with _image_errors():
        return open_image(data, max_pixels)


def upload_pixels(image: Image.Image, manifest: Manifest) -> np.ndarray:
    """The model's input; the decoded image is released here, in the thread that decoded it,
    not when the request ends (a large one is tens of MB)."""
    try:
        with _image_errors():
            return to_pixels(image, manifest.preprocessing, manifest.input_shape)
    finally:
        image.close()


@contextmanager
def _image_errors() -> Iterator[None]:
    """What is wrong with an image, as the HTTP error a client gets."""
    try:
        yield
    except ImageTooLarge as exc:
        raise reject(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "too_many_pixels", str(exc)) from exc
    except UnsupportedFormat as exc:
        raise reject(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "unsupported_format", str(exc)) from exc
    except InvalidImage as exc:
        raise reject(status.HTTP_422_UNPROCESSABLE_CONTENT, "invalid_image", str(exc)) from exc

"""A submission's input, from what the client sent to what its record stores, in one pass:
an image's header is opened and checked, its pixels decoded and preprocessed
(shared.preprocessing), then encoded (shared.codec), or, when small, stored as it came for
the worker to decode (DECODE_IN_WORKER_MAX_BYTES); a features model's values, checked
already (api.features.feature_vector), are encoded. Whatever is wrong with an image is
refused here, as the 4xx a client gets, before anything is queued."""

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from fastapi import status
from PIL import Image

from api.decoding import INLINE_PIXELS, DecodePool
from api.errors import reject
from shared.codec import encode_features, encode_image, encode_pixels
from shared.preprocessing import ImageTooLarge, InvalidImage, UnsupportedFormat, open_image, to_pixels
from shared.registry import Manifest


async def stored_input(data: bytes | np.ndarray, manifest: Manifest, max_pixels: int, decoder: DecodePool,
                       worker_decodes_up_to: int = 0) -> str:
    """The record's `input`: features' values; an image of at most `worker_decodes_up_to`
    bytes as it came, its header checked (the worker decodes it, beside the model); or an
    image's preprocessed pixels, decoded inline when small, else in the bounded `decoder`
    pool (off the event loop)."""
    if isinstance(data, np.ndarray):
        return encode_features(data)
    with _image_errors():
        image = open_image(data, max_pixels)  # the header only (cheap: no pixel is decompressed)
    # Small in bytes *and* in pixels: a small PNG may declare millions of pixels, and the
    # worker decodes on the model's thread, which every key's jobs share.
    if len(data) <= worker_decodes_up_to and image.width * image.height <= INLINE_PIXELS:
        image.close()
        return encode_image(data)
    if image.width * image.height > INLINE_PIXELS:  # the pixels, not the bytes: PNG compresses
        return await decoder.run(_encoded_pixels, image, manifest)
    return _encoded_pixels(image, manifest)


def _encoded_pixels(image: Image.Image, manifest: Manifest) -> str:
    """The model's input, encoded; the decoded image is released here, in the thread that
    decoded it, not when the request ends (a large one is tens of MB)."""
    try:
        with _image_errors():
            pixels = to_pixels(image, manifest.preprocessing, manifest.input_shape)
    finally:
        image.close()
    return encode_pixels(pixels)


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

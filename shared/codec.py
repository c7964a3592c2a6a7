"""How a job's input is stored in its record: preprocessed pixels as uint8, features as
float32, both base64. The API encodes (shared.preprocessing makes the values), the worker
decodes into a row of the model's input."""

import base64

import numpy as np


def encode_pixels(pixels: np.ndarray) -> str:
    """Preprocessed pixels (0..255) as uint8: a quarter of float32 on the queue and in Redis."""
    return base64.b64encode(np.ascontiguousarray(quantize(pixels)).tobytes()).decode("ascii")


def decode_pixels(payload: str, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of encode_pixels; raises ValueError when the payload does not fit the shape."""
    raw = base64.b64decode(payload, validate=True)
    expected = int(np.prod(shape))
    if len(raw) != expected:
        raise ValueError(f"input has {len(raw)} bytes, model expects {expected} for shape {tuple(shape)}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape)


def quantize(pixels: np.ndarray) -> np.ndarray:
    """Preprocessed pixels (0..255) as the uint8 they travel as."""
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


# An image stored as the client sent it, for the worker to decode beside the model
# (DECODE_IN_WORKER_MAX_BYTES): its bytes, base64, after this prefix (base64 has no ':').
IMAGE_PREFIX = "image:"


def encode_image(data: bytes) -> str:
    return IMAGE_PREFIX + base64.b64encode(data).decode("ascii")


def stored_image(payload: str) -> bytes | None:
    """The bytes of an image stored by encode_image; None for any other payload."""
    if not payload.startswith(IMAGE_PREFIX):
        return None
    return base64.b64decode(payload[len(IMAGE_PREFIX):], validate=True)


FEATURE_DTYPE = np.dtype("<f4")  # float32, little-endian: what a features model takes


def encode_features(values: np.ndarray) -> str:
    """A features model's input (finite float32 values, the manifest's order), base64."""
    return base64.b64encode(np.ascontiguousarray(values, dtype=FEATURE_DTYPE).tobytes()).decode("ascii")


def decode_features(payload: str, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of encode_features; raises ValueError when the payload does not fit the shape
    or holds a value that is not finite."""
    raw = base64.b64decode(payload, validate=True)
    expected = int(np.prod(shape)) * FEATURE_DTYPE.itemsize
    if len(raw) != expected:
        raise ValueError(f"input has {len(raw)} bytes, model expects {expected} for {int(np.prod(shape))} features")
    values = np.frombuffer(raw, dtype=FEATURE_DTYPE).reshape(shape).astype(np.float32)
    if not np.isfinite(values).all():
        raise ValueError("input has a value that is not a finite number")
    return values

"""Hostile inputs that once answered 500, built on the spot (no binary fixtures): the tests
(tests/api/test_bad_inputs.py), the Schemathesis run (tests/utils/schemathesis_hooks.py) and
the hostile-upload benchmark (benchmarks/bombs.py) send the same ones."""

import io
import struct
import zlib

import numpy as np
from PIL import Image

# Deeper than json.loads recurses (its RecursionError was the 500), and than pydantic reads.
DEEP_JSON_LEVELS = 100_000


def _chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, data, and the CRC of type + data (the decoder checks it)."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_with_garbage_exif(size: int = 28) -> bytes:
    """A valid white PNG with an eXIf chunk that is not EXIF: its pixels decode, and reading
    its orientation (ImageOps.exif_transpose) raised SyntaxError."""
    out = io.BytesIO()
    Image.new("L", (size, size), 255).save(out, format="PNG")
    data = out.getvalue()
    at = data.index(b"IDAT") - 4  # the eXIf chunk must come before the image data
    return data[:at] + _chunk(b"eXIf", b"garbage, not a TIFF header" * 4) + data[at:]


def tiff_16bit_big_endian(size: int = 28) -> bytes:
    """A 16-bit greyscale TIFF, big-endian (mode I;16B): a dark digit-like bar on white.
    Image.point, which 8-bit conversion used, raised ValueError for this mode."""
    pixels = np.full((size, size), 65535, dtype=">u2")
    pixels[size // 4: 3 * size // 4, size // 2 - 2: size // 2 + 2] = 0
    out = io.BytesIO()
    Image.frombytes("I;16B", (size, size), pixels.tobytes()).save(out, format="TIFF")
    return out.getvalue()


def deep_json(levels: int = DEEP_JSON_LEVELS) -> bytes:
    """A features body whose `features` nests `levels` lists deep."""
    return b'{"model": "iris", "features": ' + b"[" * levels + b"]" * levels + b"}"

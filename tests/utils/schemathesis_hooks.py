"""Schemathesis hooks (SCHEMATHESIS_HOOKS=tests.utils.schemathesis_hooks), for what a JSON
Schema cannot make up. Neither changes whether a case is valid: what Schemathesis checks a
response against is the case as generated.

- Images: the document declares file parts as images (`encoding.contentType`); Schemathesis
  sends random text for them, rightly refused with 415 or 422. On the wire, each file part
  whose generated value is a string (the schema's type for a file, so never a case's
  deliberate violation) carries a small real image of the part's declared type instead, its
  size, mode and colour drawn from the generated text. Values of other types, and lists too
  long or short, go out as generated. (Put in the case itself, as bytes, the images would
  make Schemathesis unable to tell a negative case that is valid once sent, e.g. `[]` for an
  optional field, which sends nothing.)
- webhook_url, batch_webhook_url: the server refuses URLs its SSRF guard refuses (loopback, private or other
  non-global addresses however spelled, ports other than 80 and 443: documented, but beyond
  what a pattern can say, and WEBHOOK_ALLOWED_HOSTS changes it). Any string is valid in the
  schema, so a webhook_url part whose generated value is a non-empty string goes out as a
  public https URL derived from it. No webhook worker runs: nothing is delivered.
- Idempotency-Key: reusing a key with a different request is refused with 422 by design
  (documented; tests/api/test_job_api.py checks it). Schemathesis draws keys from a small
  space and reuses them, so a valid key (1 to 255 characters) gets a unique prefix and stays
  valid; an invalid one is sent as generated.
"""

import hashlib
import io
import uuid
from typing import Any

import schemathesis
from PIL import Image

from api.deps import MAX_IDEMPOTENCY_KEY
from api.openapi import IMAGE_TYPES

# Parts of a declared type go out through its serializer; Schemathesis has none for these two.
for _media_type in ("image/bmp", "image/tiff"):
    schemathesis.serializer.alias(_media_type, "application/octet-stream")
_MODES = ("L", "RGB", "RGBA", "P")
_JPEG_MODES = ("L", "RGB")


def image(seed: bytes, media_type: str) -> bytes:
    """A decodable image of `media_type` (one of IMAGE_TYPES), 1 to 64 pixels a side."""
    image_format = media_type.removeprefix("image/").upper()
    digest = hashlib.sha256(seed).digest()
    modes = _JPEG_MODES if image_format == "JPEG" else _MODES
    buffer = io.BytesIO()
    Image.new(modes[digest[0] % len(modes)], (1 + digest[1] % 64, 1 + digest[2] % 64), digest[3]).save(
        buffer, format=image_format)
    return buffer.getvalue()


def _file_fields(case: schemathesis.Case) -> set[str]:
    return {name for body in case.operation.body if body.media_type == "multipart/form-data"
            for name, encoding in body.definition.get("encoding", {}).items()
            if encoding.get("contentType") == IMAGE_TYPES}


def _images_on_the_wire(case: schemathesis.Case, kwargs: dict[str, Any]) -> None:
    fields = _file_fields(case)
    if not fields or not isinstance(case.body, dict):
        return
    parts = case.as_transport_kwargs().get("files") or []
    seen: dict[str, int] = {}
    sent = []
    for name, part in parts:
        generated = case.body.get(name)
        index = seen[name] = seen.get(name, -1) + 1
        value = generated[index] if isinstance(generated, list) and index < len(generated) else generated
        if name in fields and part[0] is not None and isinstance(value, str | bytes):
            media_type = part[2] if len(part) > 2 else IMAGE_TYPES.split(", ")[0]
            seed = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
            part = (part[0], image(seed, media_type), media_type)
        elif name in ("webhook_url", "batch_webhook_url") and isinstance(value, str) and value:
            digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
            part = (part[0], f"https://hooks.example.com/{digest}", *part[2:])
        sent.append((name, part))
    if sent:
        kwargs["files"] = sent


def _unique_idempotency_key(case: schemathesis.Case) -> None:
    key = (case.headers or {}).get("idempotency-key")
    if isinstance(key, str) and 0 < len(key.strip()) <= MAX_IDEMPOTENCY_KEY:
        case.headers["idempotency-key"] = (uuid.uuid4().hex + key)[:max(len(key), 32)]


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: dict[str, Any]) -> None:
    _unique_idempotency_key(case)
    _images_on_the_wire(case, kwargs)

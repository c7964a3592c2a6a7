"""A training ZIP, checked: images in one folder per label, nothing that could hurt.

The API runs `read_archive` before anything is queued (a refusal is a 4xx, nothing
recorded); the training worker runs it again to get the images (the same checks, so a
record can never smuggle in what the API would refuse). No TensorFlow, nothing written
to disk: entries are read into memory, each bounded, never extracted.

Refused (`ArchiveRefused`, with the HTTP status the API answers):
- 415: not a ZIP archive.
- 413: more entries than `max_files`; more bytes, all entries together, than
  `max_uncompressed` (declared in the central directory, and counted while reading, so an
  entry that lies about its size is cut off); an entry of 1 MiB or more (or the whole)
  compressed more than `max_ratio` : 1; entries whose compressed sizes add up to more than
  the archive (overlapping entries: a zip bomb); an entry over `max_entry_bytes`; an
  image over `max_pixels`.
- 422: an absolute path, a drive letter, a `..` (or `.`, or empty) path component, a
  symbolic link, an encrypted or duplicate entry, an unsupported compression method; a file
  that is not an image Pillow can open and verify (PNG, JPEG, WebP, BMP, GIF, TIFF); files
  outside `<label>/<image>` (one top-level folder wrapping the label folders is fine);
  fewer than 2 labels, or a label with fewer than `min_per_label` images.

Ignored: folder entries, macOS' `__MACOSX/` folder and `.DS_Store` files.
"""

import hashlib
import io
import re
import stat
import zipfile
from dataclasses import dataclass, field
from typing import NamedTuple

from shared.preprocessing import ImageTooLarge, InvalidImage, open_image

RATIO_CHECKED_FROM = 1024 * 1024  # smaller entries may compress well (a blank BMP) and cost nothing
MAX_LABEL_LENGTH = 100
_CHUNK = 64 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


class ArchiveRefused(ValueError):
    """What is wrong with the archive, and the HTTP status that says it."""

    def __init__(self, status: int, reason: str, detail: str):
        super().__init__(detail)
        self.status, self.reason = status, reason


class Limits(NamedTuple):
    max_uncompressed: int
    max_files: int
    max_ratio: float
    min_per_label: int
    max_entry_bytes: int
    max_pixels: int

    @classmethod
    def of(cls, settings) -> "Limits":  # shared.settings.Settings (not imported: no cycle)
        return cls(settings.training_max_uncompressed_bytes, settings.training_max_files,
                   settings.training_max_ratio, settings.training_min_images_per_label,
                   settings.max_upload_bytes, settings.max_image_pixels)


@dataclass
class TrainingSet:
    """The archive's images by label (sorted), and the SHA-256 of the archive's bytes."""

    sha256: str
    labels: dict[str, list[str]] = field(default_factory=dict)  # label -> entry names
    images: dict[str, bytes] = field(default_factory=dict)  # entry name -> bytes (keep_bytes only)

    @property
    def size(self) -> int:
        return sum(len(names) for names in self.labels.values())


def _too_large(detail: str) -> ArchiveRefused:
    return ArchiveRefused(413, "archive_too_large", detail)


def _bad(detail: str) -> ArchiveRefused:
    return ArchiveRefused(422, "bad_archive", detail)


def _parts(name: str) -> list[str]:
    """The entry's path components, or 422 for one that could escape a folder."""
    if _CONTROL.search(name):
        raise _bad(f"entry {name!r} has control characters in its name")
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise _bad(f"entry {name!r} has an absolute path; use <label>/<image> paths")
    parts = name.replace("\\", "/").rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise _bad(f"entry {name!r} has an empty, '.' or '..' path component; use <label>/<image> paths")
    return parts


def _ignored(parts: list[str]) -> bool:
    return parts[0] == "__MACOSX" or parts[-1] == ".DS_Store"


def _entries(archive: zipfile.ZipFile, size: int, limits: Limits) -> list[tuple[zipfile.ZipInfo, list[str]]]:
    """The files to read, with their path components, checked from the central directory."""
    infos = archive.infolist()
    if len(infos) > limits.max_files:
        raise _too_large(f"the archive has {len(infos)} entries; the limit is {limits.max_files}")
    declared = sum(info.file_size for info in infos)
    if declared > limits.max_uncompressed:
        raise _too_large(f"the archive expands to {declared} bytes; the limit is {limits.max_uncompressed}")
    compressed = sum(info.compress_size for info in infos)
    if compressed > size:
        raise _too_large("the archive's entries overlap (their compressed sizes add up to more than the archive)")
    if declared >= RATIO_CHECKED_FROM and declared > limits.max_ratio * max(compressed, 1):
        raise _too_large(f"the archive is compressed {declared / max(compressed, 1):.0f}:1; "
                         f"the limit is {limits.max_ratio:g}:1")
    seen: set[str] = set()
    files = []
    for info in infos:
        parts = _parts(info.filename)
        if info.is_dir() or _ignored(parts):
            continue
        name = "/".join(parts)
        if name in seen:
            raise _bad(f"entry {name!r} appears twice")
        seen.add(name)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise _bad(f"entry {name!r} is a symbolic link; the archive must hold the images themselves")
        if info.flag_bits & 0x1:
            raise _bad(f"entry {name!r} is encrypted; send an archive without a password")
        if info.compress_type not in _METHODS:
            raise _bad(f"entry {name!r} uses an unsupported compression method; use deflate")
        if info.file_size > limits.max_entry_bytes:
            raise _too_large(f"entry {name!r} is {info.file_size} bytes; the limit is {limits.max_entry_bytes}")
        if info.file_size >= RATIO_CHECKED_FROM and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise _too_large(f"entry {name!r} is compressed {info.file_size / max(info.compress_size, 1):.0f}:1; "
                             f"the limit is {limits.max_ratio:g}:1")
        files.append((info, parts))
    return files


def _layout(files: list[tuple[zipfile.ZipInfo, list[str]]]) -> list[tuple[zipfile.ZipInfo, str]]:
    """(entry, label) for each file: `<label>/<image>`, or `<folder>/<label>/<image>` when
    one top-level folder wraps them all."""
    if not files:
        raise _bad("the archive holds no images; put them in one folder per label: <label>/<image>")
    tops = {parts[0] for _, parts in files}
    wrapped = len(tops) == 1 and all(len(parts) == 3 for _, parts in files)
    out = []
    for info, parts in files:
        inner = parts[1:] if wrapped else parts
        if len(inner) != 2:
            raise _bad(f"entry {'/'.join(parts)!r} is not in a label's folder; lay the archive out as "
                       "<label>/<image> (one folder per label, optionally inside one top-level folder)")
        label = inner[0]
        if len(label) > MAX_LABEL_LENGTH:
            raise _bad(f"label folder {label[:40]!r}... is longer than {MAX_LABEL_LENGTH} characters")
        out.append((info, label))
    return out


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> bytes:
    """The entry's bytes, never more than it declared (nor than `budget`): an entry whose
    local data expands beyond its declared size is cut off as a bomb."""
    limit = min(info.file_size, budget)
    out = bytearray()
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(min(_CHUNK, limit + 1 - len(out))):
                out += chunk
                if len(out) > limit:
                    raise _too_large(f"entry {info.filename!r} expands beyond its declared size or the archive's "
                                     "limit")
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        if isinstance(exc, ArchiveRefused):
            raise
        raise _bad(f"entry {info.filename!r} is corrupt ({exc})") from exc
    return bytes(out)


def _check_image(name: str, data: bytes, max_pixels: int) -> None:
    try:
        image = open_image(data, max_pixels)  # the header: format and size, no pixels
        image.verify()  # the file's structure (PNG: every chunk's CRC), without decoding
    except ImageTooLarge as exc:
        raise ArchiveRefused(413, "too_many_pixels", f"entry {name!r}: {exc}") from exc
    except InvalidImage as exc:
        raise _bad(f"entry {name!r} is not an image Pillow can open ({exc})") from exc
    except Exception as exc:  # verify()'s own errors (SyntaxError, struct.error, ...)
        raise _bad(f"entry {name!r} is not a valid image ({exc})") from exc


def read_archive(data: bytes, limits: Limits, keep_bytes: bool = False) -> TrainingSet:
    """The archive checked (see the module's docstring); with `keep_bytes`, the images too."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise ArchiveRefused(415, "not_a_zip", f"the upload is not a ZIP archive ({exc}); send a .zip of "
                                               "<label>/<image> folders") from exc
    found = TrainingSet(hashlib.sha256(data).hexdigest())
    with archive:
        entries = _layout(_entries(archive, len(data), limits))
        budget = limits.max_uncompressed
        for info, label in entries:
            content = _read(archive, info, budget)
            budget -= len(content)
            _check_image(info.filename, content, limits.max_pixels)
            found.labels.setdefault(label, []).append(info.filename)
            if keep_bytes:
                found.images[info.filename] = content
    found.labels = dict(sorted(found.labels.items()))
    if len(found.labels) < 2:
        raise _bad(f"the archive has {len(found.labels)} label folder(s); a classifier needs at least 2")
    few = {label: len(names) for label, names in found.labels.items() if len(names) < limits.min_per_label}
    if few:
        listed = ", ".join(f"{label!r} ({count})" for label, count in list(few.items())[:10])
        raise _bad(f"each label needs at least {limits.min_per_label} images; too few in {listed}")
    return found

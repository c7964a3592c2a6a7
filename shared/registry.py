"""Model manifests on disk: models/<name>/<version>/manifest.json next to the Keras artifact.

Both the API (validation, preprocessing) and the worker (loading) read them, so this
module must stay free of TensorFlow.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from shared.calibration import Calibration

log = logging.getLogger(__name__)


class Preprocessing(BaseModel):
    color_mode: Literal["L", "RGB"] = "RGB"
    # "auto": make the subject bright on a dark background, as digit datasets are.
    polarity: Literal["auto", "none"] = "none"
    # "ink": crop to the drawn content and pad it square before resizing.
    crop: Literal["ink", "none"] = "none"
    # Pixel values 0..255 are mapped linearly onto [low, high].
    scale: tuple[float, float] = (0.0, 1.0)


class Input(BaseModel):
    """What the model takes. "image": an upload, preprocessed to input_shape (height, width,
    channels). "features": a JSON body of numbers, one per name, in this order; input_shape
    is then (len(names),) and the model normalizes its input itself (no preprocessing)."""

    kind: Literal["image", "features"] = "image"
    names: list[str] | None = Field(None, min_length=1)


class Manifest(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    version: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    artifact: str = "model.keras"
    input: Input = Input()
    # (height, width, channels) for images; (number of features,) for features.
    input_shape: tuple[int, ...]
    labels: list[str] = Field(min_length=1)
    preprocessing: Preprocessing = Preprocessing()
    # A module of models/ whose `train()` rebuilds the model from data shipped with the
    # code: a worker that finds the artifact missing trains it at start (worker/inference/runtime.py).
    train: str | None = Field(None, pattern=r"^models\.[a-z_][a-z0-9_]*$")
    metrics: dict[str, float] = {}
    # Temperature and out-of-distribution threshold measured on held-out data
    # (shared/calibration.py); without one, results carry the raw score and no in_distribution.
    calibration: Calibration | None = None
    directory: Path = Field(Path("."), exclude=True)

    @model_validator(mode="after")
    def _channels_match_mode(self) -> "Manifest":
        if self.input.kind == "features":
            names = self.input.names or []
            if not names or len(set(names)) != len(names):
                raise ValueError("a features input needs `names`, each once")
            if self.input_shape != (len(names),):
                raise ValueError(f"input_shape must be [{len(names)}], one per feature name")
            return self
        if self.input.names is not None:
            raise ValueError("`names` are for a features input only")
        if len(self.input_shape) != 3:
            raise ValueError("an image input_shape is [height, width, channels]")
        expected = 1 if self.preprocessing.color_mode == "L" else 3
        if self.input_shape[2] != expected:
            raise ValueError(
                f"input_shape has {self.input_shape[2]} channels but color_mode "
                f"{self.preprocessing.color_mode} gives {expected}"
            )
        return self

    @property
    def key(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def artifact_path(self) -> Path:
        return self.directory / self.artifact

    def contained_artifact(self) -> Path:
        """The artifact's path, resolved (symbolic links followed), or ValueError when it lies
        outside its version folder (`../other/model.keras`, an absolute path, a link out): a
        manifest may only name a file of its own version, never one elsewhere on the host."""
        folder = self.directory.resolve()
        path = (self.directory / self.artifact).resolve()
        if not path.is_relative_to(folder) or path == folder:
            raise ValueError(f"{self.key}: artifact {self.artifact!r} resolves to {path}, outside its version "
                             f"folder {folder}; refused")
        return path


class UnknownModel(LookupError):
    pass


def version_order(version: str) -> tuple:
    """Sort key of a version string: numeric parts numerically (10 after 9), others after."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in version.split("."))


def scan(model_dir: Path) -> tuple[dict[str, Manifest], dict[str, str]]:
    """Every valid manifest under `model_dir` by key ('name:version'), and each invalid
    one's folder ('name:version') -> why."""
    found: dict[str, Manifest] = {}
    invalid: dict[str, str] = {}
    for path in sorted(Path(model_dir).glob("*/*/manifest.json")):
        try:
            manifest = Manifest.model_validate({**json.loads(path.read_text()), "directory": path.parent})
            if (manifest.name, manifest.version) != (path.parent.parent.name, path.parent.name):
                raise ValueError(f"{path}: name/version must match its folder")
        except (OSError, ValueError) as exc:  # pydantic's ValidationError and JSON's errors are ValueErrors
            invalid[f"{path.parent.parent.name}:{path.parent.name}"] = f"invalid model manifest {path}: {exc}"
            continue
        found[manifest.key] = manifest
    return found, invalid


@dataclass(frozen=True)
class _State:
    """One reading of MODEL_DIR and of the defaults, replaced whole (never changed), so a
    reader on another thread sees either the old reading or the new one."""

    manifests: dict[str, Manifest]
    invalid: dict[str, str]
    defaults: dict[str, str]  # model name -> default version (shared.catalog), when one is set
    latest: list[Manifest]  # the newest version of every model, by name


def _state(manifests: dict[str, Manifest], invalid: dict[str, str], defaults: dict[str, str]) -> _State:
    newest: dict[str, Manifest] = {}
    for m in manifests.values():
        if m.name not in newest or version_order(m.version) > version_order(newest[m.name].version):
            newest[m.name] = m
    return _State(manifests, invalid, dict(defaults), sorted(newest.values(), key=lambda m: m.name))


class Registry:
    """The model versions in `model_dir`, read on first use and again on `refresh()` (a
    version added or removed without a restart: see shared.catalog). A model's default
    version is the one its `defaults` entry names (set through Redis), else its newest.

    strict: an invalid manifest raises ValueError (tools, tests). The services pass False:
    an invalid manifest is logged and reported (`invalid`), and every other model serves."""

    def __init__(self, model_dir: Path, default_model: str, *, strict: bool = True):
        self.model_dir = Path(model_dir)
        self.default_model = default_model
        self.strict = strict
        self._current: _State | None = None

    @property
    def _read(self) -> _State:
        if self._current is None:
            self.refresh()
        assert self._current is not None
        return self._current

    @property
    def manifests(self) -> dict[str, Manifest]:
        return self._read.manifests

    @property
    def latest(self) -> list[Manifest]:
        """The newest version of every model."""
        return self._read.latest

    @property
    def invalid(self) -> dict[str, str]:
        """Folders ('name:version') whose manifest is invalid -> why (strict=False only)."""
        return self._read.invalid

    @property
    def defaults(self) -> dict[str, str]:
        """Model name -> its default version, as set through Redis (shared.catalog)."""
        return self._read.defaults

    def refresh(self, defaults: dict[str, str] | None = None) -> bool:
        """Read `model_dir` again (and take `defaults`, model name -> version, when given);
        whether the versions found (or their manifests) changed since the last reading."""
        found, invalid = scan(self.model_dir)
        if invalid and self.strict:
            raise ValueError(next(iter(invalid.values())))
        old = self._current
        for key, why in invalid.items():
            if old is None or old.invalid.get(key) != why:
                log.error("%s; the other models serve", why)
        if defaults is None:
            defaults = old.defaults if old is not None else {}
        self._current = _state(found, invalid, defaults)
        return old is None or old.manifests != found or old.invalid.keys() != invalid.keys()

    def set_defaults(self, defaults: dict[str, str]) -> None:
        """Take new defaults (model name -> version) without reading `model_dir` again."""
        state = self._read
        self._current = _state(state.manifests, state.invalid, defaults)

    def default_version(self, name: str) -> Manifest | None:
        """Model `name`'s default version: the one set through Redis while it exists on
        disk, else its newest; None for an unknown model."""
        state = self._read
        pinned = state.defaults.get(name)
        if pinned and f"{name}:{pinned}" in state.manifests:
            return state.manifests[f"{name}:{pinned}"]
        return next((m for m in state.latest if m.name == name), None)

    @property
    def default_keys(self) -> set[str]:
        """Every model's default version's key."""
        state = self._read
        return {m.key for m in (self.default_version(latest.name) for latest in state.latest) if m is not None}

    def resolve(self, ref: str | None) -> Manifest:
        """'name' (its default version), 'name:version' or None (the default model) -> its manifest."""
        ref = (ref or self.default_model).strip()
        name, _, version = ref.partition(":")
        manifests = self.manifests
        found = manifests.get(f"{name}:{version}") if version else self.default_version(name)
        if found is None:
            known = ", ".join(sorted(manifests)) or "none"
            raise UnknownModel(f"unknown model {ref!r}; available: {known}")
        return found

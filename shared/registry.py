"""Model manifests on disk: models/<name>/<version>/manifest.json next to the Keras artifact.

Both the API (validation, preprocessing) and the worker (loading) read them, so this
module must stay free of TensorFlow.
"""

import json
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, model_validator


class Preprocessing(BaseModel):
    color_mode: Literal["L", "RGB"] = "RGB"
    # "auto": make the subject bright on a dark background, as digit datasets are.
    polarity: Literal["auto", "none"] = "none"
    # "ink": crop to the drawn content and pad it square before resizing.
    crop: Literal["ink", "none"] = "none"
    # Pixel values 0..255 are mapped linearly onto [low, high].
    scale: tuple[float, float] = (0.0, 1.0)


class Manifest(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    version: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    artifact: str = "model.keras"
    input_shape: tuple[int, int, int]
    labels: list[str] = Field(min_length=1)
    preprocessing: Preprocessing = Preprocessing()
    metrics: dict[str, float] = {}
    directory: Path = Field(Path("."), exclude=True)

    @model_validator(mode="after")
    def _channels_match_mode(self) -> "Manifest":
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


class UnknownModel(LookupError):
    pass


def _version_order(version: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in version.split("."))


class Registry:
    def __init__(self, model_dir: Path, default_model: str):
        self.model_dir = Path(model_dir)
        self.default_model = default_model

    @cached_property
    def manifests(self) -> dict[str, Manifest]:
        found: dict[str, Manifest] = {}
        for path in sorted(self.model_dir.glob("*/*/manifest.json")):
            try:
                manifest = Manifest.model_validate(
                    {**json.loads(path.read_text()), "directory": path.parent}
                )
            except (ValueError, ValidationError) as exc:
                raise ValueError(f"invalid model manifest {path}: {exc}") from exc
            if (manifest.name, manifest.version) != (path.parent.parent.name, path.parent.name):
                raise ValueError(f"{path}: name/version must match its folder")
            found[manifest.key] = manifest
        return found

    @cached_property
    def latest(self) -> list[Manifest]:
        """The newest version of every model (manifests are read once, so this is fixed too)."""
        newest: dict[str, Manifest] = {}
        for m in self.manifests.values():
            if m.name not in newest or _version_order(m.version) > _version_order(newest[m.name].version):
                newest[m.name] = m
        return sorted(newest.values(), key=lambda m: m.name)

    def resolve(self, ref: str | None) -> Manifest:
        """'name', 'name:version' or None (the default model) -> its manifest."""
        ref = (ref or self.default_model).strip()
        name, _, version = ref.partition(":")
        if version:
            found = self.manifests.get(f"{name}:{version}")
        else:
            found = next((m for m in self.latest if m.name == name), None)
        if found is None:
            known = ", ".join(sorted(self.manifests)) or "none"
            raise UnknownModel(f"unknown model {ref!r}; available: {known}")
        return found

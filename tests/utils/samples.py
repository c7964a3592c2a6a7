"""The default model's manifest and held-out digits (never trained on), drawn as pictures."""

import io
import zipfile
from functools import cache

import numpy as np

from models.digits_data import render, split, varied_renderings
from shared.registry import Manifest, Registry
from shared.settings import Settings

REGISTRY = Registry(Settings().model_dir, "digits")  # the committed models, digits the default
DIGITS: Manifest = REGISTRY.resolve(None)


@cache
def heldout() -> tuple[np.ndarray, np.ndarray]:
    """Held-out 8x8 digits and their labels."""
    _, images, _, labels = split()
    return images, labels


def heldout_png(index: int = 0, size: int = 64, **style) -> bytes:
    """Held-out digit number `index` as a PNG (see models.digits_data.render for styles)."""
    return render(heldout()[0][index], size=size, **style)


def seven_png() -> bytes:
    """The first held-out 7."""
    return heldout_png(int(np.flatnonzero(heldout()[1] == 7)[0]), size=100)


def make_zip(files: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def digit_files(digits: list[int], per_label: int, prefix: str = "", seed: int = 1) -> dict[str, bytes]:
    """`per_label` renderings (random size, polarity, colour, format) of training digits."""
    images, _, labels, _ = split()
    rng = np.random.default_rng(seed)
    files = {}
    for digit in digits:
        for i, index in enumerate(np.flatnonzero(labels == digit)[:per_label]):
            files[f"{prefix}{digit}/{i}.png"] = varied_renderings(images[index], rng)
    return files

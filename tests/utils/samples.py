"""The default model's manifest and held-out digits (never trained on), drawn as pictures."""

from functools import cache

import numpy as np

from models.digits_data import render, split
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

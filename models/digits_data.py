"""scikit-learn's bundled handwritten digits (no download) as pictures a user might send.

The training script renders the 8x8 digits as images of many sizes, polarities and
colours and feeds them through the service's own preprocessing; the tests render held-out
digits the same way and send them over HTTP.
"""

import io

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SEED = 0


def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_images, held_out_images, train_labels, held_out_labels); images are 8x8 in 0..16."""
    digits = load_digits()
    return train_test_split(
        digits.images, digits.target, test_size=0.2, stratify=digits.target, random_state=SEED
    )


def fit_validation_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The training digits split again: (fit_images, validation_images, fit_labels,
    validation_labels). The model is fitted on the first; its calibration (temperature and
    out-of-distribution threshold) on the second, so the held-out digits judge both."""
    train_x, _, train_y, _ = split()
    return train_test_split(train_x, train_y, test_size=0.1, stratify=train_y, random_state=SEED)


def render(
    digit: np.ndarray,
    size: int = 64,
    margin: float = 0.25,
    dark_on_light: bool = True,
    ink: tuple[int, int, int] | None = None,
    image_format: str = "PNG",
) -> bytes:
    """Draw an 8x8 digit as a size x size picture, with paper around it, encoded as image bytes."""
    strength = Image.fromarray((np.asarray(digit) * (255 / 16)).astype(np.uint8), mode="L")
    inner = max(8, int(size * (1 - 2 * margin)))
    strength = strength.resize((inner, inner), Image.Resampling.BILINEAR)
    canvas = Image.new("L", (size, size), 0)
    offset = (size - inner) // 2
    canvas.paste(strength, (offset, offset))
    alpha = np.asarray(canvas, dtype=np.float32)[:, :, None] / 255.0
    paper = np.array([255, 255, 255] if dark_on_light else [0, 0, 0], dtype=np.float32)
    pen = np.array(ink if ink else ([0, 0, 0] if dark_on_light else [255, 255, 255]), dtype=np.float32)
    pixels = (paper * (1 - alpha) + pen * alpha).astype(np.uint8)
    image = Image.fromarray(pixels, mode="RGB")
    if ink is None:
        image = image.convert("L")
    out = io.BytesIO()
    image.save(out, format=image_format)
    return out.getvalue()


def varied_renderings(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """One random rendering: any size, either polarity, sometimes coloured, sometimes JPEG."""
    dark = bool(rng.integers(2))
    coloured = rng.random() < 0.3
    ink = None
    if coloured:
        ink = tuple(int(v) for v in (rng.integers(0, 90, 3) if dark else rng.integers(170, 256, 3)))
    return render(
        digit,
        size=int(rng.integers(12, 160)),
        margin=float(rng.uniform(0.05, 0.35)),
        dark_on_light=dark,
        ink=ink,
        image_format="JPEG" if rng.random() < 0.2 else "PNG",
    )

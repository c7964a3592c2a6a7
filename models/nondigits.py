"""Synthetic pictures that are not digits, drawn in code (seeded, no download).

What a new user might send the digits model by mistake: colour gradients, letters (Pillow's
default font), geometric shapes, noise and a cartoon landscape, at random sizes and colours,
as PNG or JPEG bytes: they go through the service's own preprocessing, as uploads do.

`models/calibrate.py` fits the out-of-distribution threshold on one seed's set and measures
the share flagged on another's; the tests send a third over HTTP.
"""

import io
import string
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Letters whose glyphs are drawn like a digit are left out: O o D Q (0), I l i j (1), Z z (2),
# S s (5), b G (6), B (8), g q (9), T t (7 or 1). A picture of one is a fair digit.
LETTERS = "".join(c for c in string.ascii_letters if c not in "OoDQIlijZzSsbGBgqTt")

Colour = tuple[int, int, int]


def _colour(rng: np.random.Generator) -> Colour:
    return tuple(int(v) for v in rng.integers(0, 256, 3))  # type: ignore[return-value]


def _contrasting(rng: np.random.Generator, other: Colour) -> Colour:
    while True:
        colour = _colour(rng)
        if abs(sum(colour) - sum(other)) > 180:
            return colour


def gradient(rng: np.random.Generator, size: int) -> Image.Image:
    """Linear (any direction) or radial blend of two or three random colours."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / max(1, size - 1)
    if rng.random() < 0.7:
        angle = rng.uniform(0, 2 * np.pi)
        t = (xs - 0.5) * np.cos(angle) + (ys - 0.5) * np.sin(angle)
    else:
        cx, cy = rng.uniform(0, 1, 2)
        t = np.hypot(xs - cx, ys - cy)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    stops = np.array([_colour(rng) for _ in range(int(rng.integers(2, 4)))], dtype=np.float32)
    position = t * (len(stops) - 1)
    low = np.minimum(position.astype(int), len(stops) - 2)
    frac = (position - low)[..., None]
    pixels = stops[low] * (1 - frac) + stops[low + 1] * frac
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def letter(rng: np.random.Generator, size: int) -> Image.Image:
    """One letter (not a digit look-alike) in Pillow's default font, on plain paper."""
    paper = _colour(rng) if rng.random() < 0.3 else (255, 255, 255)
    ink = _contrasting(rng, paper)
    image = Image.new("RGB", (size, size), paper)
    char = LETTERS[int(rng.integers(len(LETTERS)))]
    font = ImageFont.load_default(size=max(8, int(size * rng.uniform(0.5, 0.85))))
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((0, 0), char, font=font)
    x = (size - (right - left)) / 2 - left + rng.uniform(-0.08, 0.08) * size
    y = (size - (bottom - top)) / 2 - top + rng.uniform(-0.08, 0.08) * size
    draw.text((x, y), char, fill=ink, font=font, stroke_width=int(rng.integers(0, 1 + size // 24)))
    return image


def shapes(rng: np.random.Generator, size: int) -> Image.Image:
    """One to four filled rectangles, ellipses, triangles or stars (a lone ring or bar, a fair
    0 or 1, is never drawn)."""
    paper = _colour(rng) if rng.random() < 0.5 else (255, 255, 255)
    image = Image.new("RGB", (size, size), paper)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 5))):
        colour = _contrasting(rng, paper)
        cx, cy = rng.uniform(0.25, 0.75, 2) * size
        r = rng.uniform(0.15, 0.4) * size
        kind = int(rng.integers(4))
        if kind == 0:
            w, h = r * rng.uniform(0.7, 1.0), r * rng.uniform(0.7, 1.0)
            draw.rectangle((cx - w, cy - h, cx + w, cy + h), fill=colour)
        elif kind == 1:
            w, h = r * rng.uniform(0.7, 1.0), r * rng.uniform(0.7, 1.0)
            draw.ellipse((cx - w, cy - h, cx + w, cy + h), fill=colour)
        elif kind == 2:
            draw.regular_polygon((cx, cy, r), 3, rotation=float(rng.uniform(0, 360)), fill=colour)
        else:
            turn = rng.uniform(0, np.pi)
            points = [(cx + (r if k % 2 == 0 else r * 0.45) * np.cos(turn + k * np.pi / 5),
                       cy + (r if k % 2 == 0 else r * 0.45) * np.sin(turn + k * np.pi / 5)) for k in range(10)]
            draw.polygon(points, fill=colour)
    return image


def noise(rng: np.random.Generator, size: int) -> Image.Image:
    """Uniform, Gaussian, salt-and-pepper or blocky noise, grey or colour."""
    channels = 3 if rng.random() < 0.5 else 1
    kind = int(rng.integers(4))
    if kind == 0:
        pixels: np.ndarray = rng.integers(0, 256, (size, size, channels))
    elif kind == 1:
        pixels = np.clip(rng.normal(rng.uniform(60, 200), rng.uniform(20, 70), (size, size, channels)), 0, 255)
    elif kind == 2:
        pixels = np.where(rng.random((size, size, 1)) < rng.uniform(0.05, 0.5), 0, 255) * np.ones(channels)
    else:
        cells = int(rng.integers(3, 12))
        small = rng.integers(0, 256, (cells, cells, channels)).astype(np.uint8)
        block = Image.fromarray(small[:, :, 0] if channels == 1 else small)
        return block.resize((size, size), Image.Resampling.NEAREST).convert("RGB")
    pixels = pixels.astype(np.uint8)
    return Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels).convert("RGB")


def landscape(rng: np.random.Generator, size: int) -> Image.Image:
    """A cartoon: sky, sun, hills, sometimes a tree or a house."""
    sky = (int(rng.integers(60, 160)), int(rng.integers(140, 220)), int(rng.integers(200, 256)))
    image = gradient_between(sky, (230, 240, 255), size)
    draw = ImageDraw.Draw(image)
    sx, sy, sr = rng.uniform(0.15, 0.85) * size, rng.uniform(0.1, 0.35) * size, rng.uniform(0.06, 0.14) * size
    draw.ellipse((sx - sr, sy - sr, sx + sr, sy + sr), fill=(255, int(rng.integers(180, 240)), 0))
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = rng.uniform(-0.2, 1.2) * size, rng.uniform(0.6, 0.9) * size
        w, h = rng.uniform(0.4, 0.9) * size, rng.uniform(0.15, 0.4) * size
        green = (int(rng.integers(20, 110)), int(rng.integers(120, 200)), int(rng.integers(20, 90)))
        draw.ellipse((cx - w, cy - h, cx + w, cy + h + size), fill=green)
    if rng.random() < 0.5:
        tx, ty = rng.uniform(0.2, 0.8) * size, rng.uniform(0.55, 0.75) * size
        draw.rectangle((tx - size * 0.02, ty, tx + size * 0.02, ty + size * 0.15), fill=(110, 70, 30))
        draw.ellipse((tx - size * 0.09, ty - size * 0.14, tx + size * 0.09, ty + size * 0.03), fill=(30, 120, 40))
    else:
        hx, hy, hw = rng.uniform(0.2, 0.8) * size, rng.uniform(0.6, 0.75) * size, rng.uniform(0.08, 0.14) * size
        draw.rectangle((hx - hw, hy, hx + hw, hy + hw * 1.4), fill=_colour(rng))
        draw.polygon([(hx - hw * 1.2, hy), (hx + hw * 1.2, hy), (hx, hy - hw)], fill=(170, 40, 40))
    return image


def gradient_between(top: Colour, bottom: Colour, size: int) -> Image.Image:
    t = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    column = np.array(top, dtype=np.float32) * (1 - t) + np.array(bottom, dtype=np.float32) * t
    return Image.fromarray(np.repeat(column, size, axis=1).astype(np.uint8), "RGB")


KINDS: dict[str, Callable[[np.random.Generator, int], Image.Image]] = {
    "gradient": gradient, "letter": letter, "shape": shapes, "noise": noise, "landscape": landscape,
}


def encode(image: Image.Image, rng: np.random.Generator) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG" if rng.random() < 0.2 else "PNG")
    return out.getvalue()


def nondigits(per_kind: int, seed: int) -> list[tuple[str, bytes]]:
    """`per_kind` pictures of every kind as (kind, image bytes), each at a random size 24..200 px."""
    rng = np.random.default_rng(seed)
    return [(kind, encode(draw(rng, int(rng.integers(24, 200))), rng))
            for kind, draw in KINDS.items() for _ in range(per_kind)]

"""Image bytes -> the model's input tensor.

Runs in the API, before anything is queued, so a bad upload is refused at the door and
the worker's hot loop only stacks ready tensors. The training script uses the same
functions, so what the model saw in training is what it sees in service.
"""

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageOps

from shared.registry import Manifest, Preprocessing

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")


class InvalidImage(ValueError):
    """The bytes are not a complete image in a supported format."""


class UnsupportedFormat(InvalidImage):
    """Pillow does not recognise the bytes as any allowed format."""


class ImageTooLarge(ValueError):
    """The image has more pixels than the configured limit (decompression-bomb guard)."""


@contextmanager
def undecodable() -> Iterator[None]:
    """Whatever Pillow or numpy raise on the bytes, as InvalidImage. Their decoders and the
    EXIF parser raise a grab bag on hostile input (OSError, SyntaxError from a garbage eXIf
    chunk, ValueError, struct.error, KeyError, IndexError...), and every one of them is the
    upload's fault, not ours: the client gets a 4xx and the worker never sees it. Our own
    refusals pass through; so does MemoryError, which is the service's state, not the file's."""
    try:
        yield
    except (InvalidImage, ImageTooLarge, MemoryError):
        raise
    except Exception as exc:
        raise InvalidImage(f"image could not be decoded ({type(exc).__name__}: {exc}); is the file complete "
                           "and valid?") from exc


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """The image's header only (format and size), checked before any pixel is decompressed,
    so a small upload declaring a huge image costs nothing. Pixels come with `load`."""
    with undecodable():  # outside: the two refusals below are ours, and pass through it
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            # Pillow's own guard fired before ours (its message quotes its built-in limit).
            raise ImageTooLarge(f"image has more pixels than the limit of {max_pixels}") from exc
        except Image.UnidentifiedImageError as exc:
            raise UnsupportedFormat(f"not a supported image; send one of: {', '.join(ALLOWED_FORMATS)}") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
    return image


def load(image: Image.Image, side: int | None = None) -> Image.Image:
    """Decompress the first frame and apply its EXIF orientation. With `side`, a JPEG is
    decoded straight at 1/2, 1/4 or 1/8 scale while both edges stay at least `side`."""
    with undecodable():
        if side is not None and image.format == "JPEG":
            image.draft(None, (side, side))
        image.load()
        # Parses the EXIF block: a garbage one raises here (SyntaxError, ...), not in load().
        ImageOps.exif_transpose(image, in_place=True)  # in place: no full-size copy
    return image


def decode(data: bytes, max_pixels: int) -> Image.Image:
    """Decode with Pillow (the content, not the declared type), first frame only."""
    return load(open_image(data, max_pixels))


def _uint8(image: Image.Image) -> Image.Image:
    """L, LA, RGB or RGBA: 8 bits a channel, what `reduce` and the alpha composite take."""
    if image.mode.startswith("I;16"):
        # Any byte order (I;16, I;16L, I;16B, I;16N): numpy reads each as its uint16 values;
        # the high byte is the 8-bit value. (`point` refuses I;16B.)
        return Image.fromarray((np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8))  # 2-D uint8: L
    if image.mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if "A" in image.mode or "transparency" in image.info:
        return image.convert("RGBA")
    return image.convert("L" if image.mode in ("1", "I", "F") else "RGB")


SHRINK_BAND_BOXES = 32  # rows of boxes reduced at a time


def _shrink(image: Image.Image, side: int) -> Image.Image:
    """Box-average down to about `side` on the long edge, still in uint8: the float32 steps
    that follow then cost the same whatever the upload's size. A band at a time, because
    `reduce` copies what it works on (an RGBA image is premultiplied first: a second
    full-size copy); bands are whole boxes high, so the result is the whole-image reduce."""
    factor = max(image.size) // side
    if factor < 2:
        return image
    width, height = image.size
    rows = factor * SHRINK_BAND_BOXES
    shrunk = Image.new(image.mode, (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        shrunk.paste(image.crop((0, top, width, min(height, top + rows))).reduce(factor), (0, top // factor))
    return shrunk


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    if image.mode in ("RGBA", "LA"):
        # Transparent areas are paper: composite onto white.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert(mode)


def _ink_square(pixels: np.ndarray) -> np.ndarray:
    """Crop to the drawn content and centre it on a square canvas (pixels: HxWxC, 0..255, ink bright)."""
    strength = pixels.max(axis=2)
    peak = float(strength.max())
    if peak <= 0:
        return pixels
    rows = np.flatnonzero((strength > 0.25 * peak).any(axis=1))
    cols = np.flatnonzero((strength > 0.25 * peak).any(axis=0))
    crop = pixels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = crop.shape[:2]
    side = max(height, width)
    canvas = np.zeros((side, side, pixels.shape[2]), dtype=pixels.dtype)
    top, left = (side - height) // 2, (side - width) // 2
    canvas[top : top + height, left : left + width] = crop
    return canvas


def _make_ink_bright(pixels: np.ndarray) -> np.ndarray:
    """Light paper -> dark; subtract the background so paper is exactly 0 and ink spans 0..255."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background = np.median(border, axis=0)
    if background.mean() > 127:
        pixels = 255.0 - pixels
        background = 255.0 - background
    pixels = np.clip(pixels - background, 0, None)
    strength = pixels.max(axis=2)
    if strength.max() <= 0:
        return pixels
    # Stretch so typical ink (not one hot pixel) is full strength, whatever the pen or lighting.
    peak = np.percentile(strength[strength > 0.5 * strength.max()], 90)
    return np.clip(pixels * (255.0 / peak), 0, 255)


def working_side(input_shape: tuple[int, ...]) -> int:
    """How large an image is kept before its float32 steps: several times the model's input
    (room for the ink crop), never below 256 px."""
    return max(256, 4 * max(input_shape[:2]))


def to_pixels(image: Image.Image, spec: Preprocessing, input_shape: tuple[int, ...]) -> np.ndarray:
    """The model's input before scaling: HxWxC, 0..255 (what travels on the queue, as uint8).
    Loads the image if `open_image` left it unloaded."""
    height, width, channels = input_shape
    side = working_side(input_shape)
    image = load(image, side)
    with undecodable():  # a mode or a size that the steps below do not take is the image's fault
        return _pixels(_to_mode(_shrink(_uint8(image), side), spec.color_mode), spec, (height, width, channels))


def _pixels(image: Image.Image, spec: Preprocessing, shape: tuple[int, int, int]) -> np.ndarray:
    """An 8-bit image of the model's colour mode -> HxWxC float32, ink bright, cropped, resized."""
    height, width, channels = shape
    pixels = np.asarray(image, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if spec.polarity == "auto":
        pixels = _make_ink_bright(pixels)
    if spec.crop == "ink":
        pixels = _ink_square(pixels)
    resized = np.stack(
        [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(pixels[:, :, c], dtype=np.float32)).resize(
                    (width, height), Image.Resampling.BOX
                )
            )
            for c in range(channels)
        ],
        axis=2,
    )
    return np.clip(resized, 0, 255)


def scale(pixels: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """0..255 -> the model's range, linearly (the worker does this, batched)."""
    low, high = spec.scale
    return (low + pixels.astype(np.float32) * np.float32((high - low) / 255.0)).astype(np.float32)


def pixels_of(data: bytes, manifest: Manifest, max_pixels: int) -> np.ndarray:
    return to_pixels(open_image(data, max_pixels), manifest.preprocessing, manifest.input_shape)


def preprocess(data: bytes, manifest: Manifest, max_pixels: int) -> np.ndarray:
    """Bytes -> the model's input tensor (training and tests; serving splits it at the queue)."""
    return scale(pixels_of(data, manifest, max_pixels), manifest.preprocessing)

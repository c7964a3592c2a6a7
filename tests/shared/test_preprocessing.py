import io

import numpy as np
import pytest
from PIL import Image

from devstack.hostile import png_with_garbage_exif, tiff_16bit_big_endian
from models.digits_data import render
from shared.preprocessing import (
    ImageTooLarge,
    InvalidImage,
    UnsupportedFormat,
    decode,
    preprocess,
)
from tests.utils.samples import DIGITS


@pytest.fixture(scope="module")
def manifest():
    return DIGITS


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kw)
    return out.getvalue()


def test_polarity_size_and_colour_give_the_same_tensor(heldout, manifest):
    digit = heldout[0][0]
    reference = preprocess(render(digit, size=64), manifest, 10**7)
    assert reference.shape == (8, 8, 1)
    assert reference.dtype == np.float32
    assert reference.min() >= 0
    assert reference.max() <= 16
    assert reference.max() > 8
    for variant in (
        render(digit, size=64, dark_on_light=False),
        render(digit, size=256, ink=(200, 30, 30)),
        render(digit, size=64, margin=0.05),
    ):
        assert np.abs(preprocess(variant, manifest, 10**7) - reference).mean() < 1.0


def test_transparent_background_is_paper(heldout, manifest):
    ink = np.asarray(Image.open(io.BytesIO(render(heldout[0][0], size=64))).convert("L"))
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 3] = 255 - ink  # black ink, transparent paper
    tensor = preprocess(encode(Image.fromarray(rgba, "RGBA"), "PNG"), manifest, 10**7)
    reference = preprocess(render(heldout[0][0], size=64), manifest, 10**7)
    assert np.abs(tensor - reference).mean() < 1.0


def test_exif_orientation_is_applied():
    wide = Image.new("L", (40, 20), 255)
    rotated = decode(encode(wide, "JPEG", exif=_exif_rotate_90()), 10**7)
    assert rotated.size == (20, 40)


def _exif_rotate_90():
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW
    return exif


def test_gif_first_frame_and_other_formats(manifest):
    frames = [Image.new("L", (16, 16), v) for v in (0, 255)]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    assert decode(out.getvalue(), 10**7).getpixel((0, 0)) in (0, (0, 0, 0))
    for fmt in ("BMP", "TIFF", "WEBP", "JPEG"):
        assert decode(encode(Image.new("RGB", (9, 7)), fmt), 10**7).size == (9, 7)


def test_rejections():
    with pytest.raises(UnsupportedFormat):
        decode(b"hello", 10**7)
    with pytest.raises(UnsupportedFormat):  # a real image in a format we do not take
        decode(encode(Image.new("RGB", (4, 4)), "PPM"), 10**7)
    png = encode(Image.new("RGB", (64, 64), (1, 2, 3)), "PNG")
    with pytest.raises(InvalidImage):
        decode(png[:60], 10**7)
    with pytest.raises(ImageTooLarge, match="4096 pixels"):
        decode(png, 4096 - 1)


def test_16_bit_greyscale_of_either_byte_order_is_read_alike(manifest):
    """Image.point refused I;16B (a ValueError, once a 500); both byte orders give the same
    tensor as the same picture in 8 bits."""
    big = tiff_16bit_big_endian()
    as_16 = Image.open(io.BytesIO(big))
    assert as_16.mode == "I;16B"
    values = np.asarray(as_16).astype(np.uint16)
    little = encode(Image.frombytes("I;16", as_16.size, values.astype("<u2").tobytes()), "TIFF")
    eight = encode(Image.fromarray((values >> 8).astype(np.uint8)), "PNG")
    expected = preprocess(eight, manifest, 10**7)
    assert np.array_equal(preprocess(big, manifest, 10**7), expected)
    assert np.array_equal(preprocess(little, manifest, 10**7), expected)


def test_whatever_pillow_raises_on_the_bytes_is_invalid_image(manifest):
    """A garbage eXIf chunk: Pillow's EXIF parser raised SyntaxError, outside the error
    handling (a 500 in the API; the training worker catches InvalidImage too)."""
    with pytest.raises(InvalidImage, match="SyntaxError"):
        preprocess(png_with_garbage_exif(), manifest, 10**7)

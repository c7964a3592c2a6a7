import numpy as np
import pytest

from shared.codec import decode_features, decode_pixels, encode_features, encode_pixels
from shared.preprocessing import scale
from shared.registry import Preprocessing


def test_pixels_round_trip_as_uint8_and_rejections():
    pixels = np.linspace(0, 255, 64, dtype=np.float32).reshape(8, 8, 1)
    decoded = decode_pixels(encode_pixels(pixels), (8, 8, 1))
    assert decoded.dtype == np.uint8
    assert np.abs(decoded - pixels).max() <= 0.5  # rounding only
    with pytest.raises(ValueError, match="bytes"):
        decode_pixels(encode_pixels(pixels), (4, 4, 1))
    with pytest.raises(ValueError, match="base64"):
        decode_pixels("not base64!", (8, 8, 1))


def test_features_round_trip_as_float32_and_rejections():
    values = np.array([5.1, 3.5, 1.4, 0.2], dtype=np.float32)
    decoded = decode_features(encode_features(values), (4,))
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, values)
    with pytest.raises(ValueError, match="bytes"):
        decode_features(encode_features(values), (3,))
    with pytest.raises(ValueError, match="finite"):
        decode_features(encode_features(np.array([1, np.nan, 2, 3])), (4,))


def test_scale_maps_pixels_onto_the_manifest_range():
    spec = Preprocessing(scale=(-1, 1))
    np.testing.assert_allclose(scale(np.array([0, 127.5, 255]), spec), [-1, 0, 1], atol=1e-6)

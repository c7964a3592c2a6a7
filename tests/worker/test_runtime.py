"""The TensorFlow runtime: buckets, padding that changes nothing, no retracing while serving."""

import numpy as np
import pytest

from tests.utils.samples import REGISTRY
from worker.inference.model import LoadedModel, buckets
from worker.inference.runtime import Runtime


@pytest.fixture(scope="module")
def digits() -> LoadedModel:
    return Runtime(REGISTRY, max_batch_size=32).models["digits:1"]


def test_buckets_are_powers_of_two_capped_at_the_maximum():
    assert buckets(1) == [1]
    assert buckets(32) == [1, 2, 4, 8, 16, 32]
    assert buckets(48) == [1, 2, 4, 8, 16, 32, 48]


def test_padding_and_chunking_do_not_change_predictions(digits):
    rng = np.random.default_rng(0)
    batch = rng.uniform(0, 16, size=(70, 8, 8, 1)).astype(np.float32)
    together = digits.predict(batch)  # 70 = 32 + 32 + 6 (padded to 8)
    alone = np.concatenate([digits.predict(row[None]) for row in batch[:5]])
    assert together.shape == (70, 10)
    np.testing.assert_allclose(together[:5], alone, atol=1e-5)
    np.testing.assert_allclose(together.sum(axis=1), 1, atol=1e-4)


def test_no_retrace_after_warm_up(digits):
    traced = digits.traces
    assert traced == len(digits.buckets)
    for n in (1, 3, 5, 17, 31, 32, 33):
        digits.predict(np.zeros((n, 8, 8, 1), dtype=np.float32))
    assert digits.traces == traced
    assert digits.traced_sizes == digits.buckets


def test_features_models_take_rows_of_numbers():
    iris = Runtime(REGISTRY, max_batch_size=8).models["iris:1"]
    assert iris.traces == len(iris.buckets)
    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]], dtype=np.float32)
    probabilities = iris.predict(iris.scale(rows))  # unscaled: the model normalizes them itself
    assert probabilities.argmax(axis=1).tolist() == [0, 2, 1]
    assert iris.traces == len(iris.buckets)

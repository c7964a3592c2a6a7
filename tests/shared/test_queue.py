import numpy as np
import pytest

from shared.queue import celery_config, decode_tensor, encode_tensor
from shared.settings import Settings


def test_tensor_round_trip_and_rejections():
    tensor = np.arange(64, dtype=np.float32).reshape(8, 8, 1)
    np.testing.assert_array_equal(decode_tensor(encode_tensor(tensor), (8, 8, 1)), tensor)
    with pytest.raises(ValueError, match="bytes"):
        decode_tensor(encode_tensor(tensor), (4, 4, 1))
    with pytest.raises(ValueError):
        decode_tensor("not base64!", (8, 8, 1))
    with pytest.raises(ValueError, match="NaN"):
        decode_tensor(encode_tensor(np.full((8, 8, 1), np.inf, np.float32)), (8, 8, 1))


def test_delivery_settings_lose_no_job():
    config = celery_config(Settings(visibility_timeout_seconds=120, max_batch_size=16, prefetch_batches=2))
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["broker_transport_options"]["visibility_timeout"] == 120
    assert config["broker_transport_options"]["unacked_restore_interval"] == 10
    # Prefetch covers the batches in flight and no more.
    assert config["worker_prefetch_multiplier"] == 32

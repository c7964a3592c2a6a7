import numpy as np
import pytest

from shared.preprocessing import scale
from shared.queue import celery_config, decode_features, decode_pixels, encode_features, encode_pixels
from shared.registry import Preprocessing
from shared.settings import Settings


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


def test_delivery_settings_lose_no_job():
    config = celery_config(Settings(visibility_timeout_seconds=120, max_batch_size=16, prefetch_batches=2))
    assert config["task_acks_late"]
    assert config["task_reject_on_worker_lost"]
    assert config["broker_transport_options"]["visibility_timeout"] == 120
    assert config["broker_transport_options"]["unacked_restore_interval"] == 10
    # Prefetch covers the batches in flight and no more.
    assert config["worker_prefetch_multiplier"] == 32


def test_redis_message_is_what_kombu_itself_writes(redis_server):
    """The API writes task messages directly; they must match kombu's own, key for key."""
    import json

    from shared.queue import INFER_TASK, make_celery, redis_message

    settings = Settings(redis_url=redis_server.url, queue_name="envelope-check")
    app = make_celery(settings, "test")
    args = ["job1", "digits:1", "AAAA", 1.5]
    app.send_task(INFER_TASK, args=args, task_id="job1", queue=settings.queue_name)
    theirs = json.loads(redis_server.client().lpop(settings.queue_name))
    ours = json.loads(redis_message(app, settings.queue_name, "job1", args))

    def shape(message):
        return {k: sorted(v) if isinstance(v, dict) else type(v).__name__ for k, v in message.items()}

    assert shape(ours) == shape(theirs)
    assert ours["body"] == theirs["body"]
    for key in ("task", "id", "root_id", "retries", "ignore_result", "timelimit"):
        assert ours["headers"][key] == theirs["headers"][key], key
    for key in ("delivery_info", "priority", "body_encoding", "delivery_mode", "correlation_id"):
        assert ours["properties"][key] == theirs["properties"][key], key

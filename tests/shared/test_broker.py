import ast
import hashlib
from importlib.metadata import version
from pathlib import Path

import pytest
from kombu.transport import redis as kombu_redis

from shared.broker import celery_config, compat, patch
from shared.settings import Settings


def test_kombus_own_brpop_read_is_the_one_the_patch_was_copied_from():
    """shared/broker/patch.py's `_brpop_read` is kombu 5.7.0's with one addition: a kombu
    whose own differs needs the patch made again from it. Read from kombu's file, which the
    patch does not change."""
    assert hashlib.sha256(kombu_brpop_read().encode()).hexdigest() == patch.KOMBU_BRPOP_READ_SHA256, (
        "kombu's Channel._brpop_read changed: copy it into shared/broker/patch.py again")


def kombu_brpop_read() -> str:
    text = Path(kombu_redis.__file__).read_text()
    channel = next(node for node in ast.parse(text).body if isinstance(node, ast.ClassDef) and node.name == "Channel")
    method = next(node for node in channel.body if isinstance(node, ast.FunctionDef) and node.name == "_brpop_read")
    return ast.get_source_segment(text, method) or ""


def test_the_installed_libraries_are_the_ones_the_seam_was_written_for():
    for package, expected in compat.WRITTEN_FOR.items():
        assert version(package) == expected
        compat.require(package)


def test_another_version_is_refused_naming_both(monkeypatch):
    monkeypatch.setitem(compat.WRITTEN_FOR, "kombu", "5.3.0")
    with pytest.raises(compat.IncompatibleLibrary, match=r"kombu 5\.7\.0 is installed.*kombu 5\.3\.0"):
        compat.require("kombu")


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

    from shared.broker import INFER_TASK, make_celery, redis_message

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


def test_infer_message_carries_its_lane_and_owner():
    import json

    from shared.broker import infer_message, make_celery

    app = make_celery(Settings(), "test")
    tag, message = infer_message(app, "q", "job1", "digits:1", 1.5, lane="high", owner="key1")
    properties = json.loads(message)["properties"]
    assert (properties["qi_lane"], properties["qi_owner"], properties["delivery_tag"]) == ("high", "key1", tag)
    _, plain = infer_message(app, "q", "job2", "digits:1", 1.5)
    assert (json.loads(plain)["properties"]["qi_lane"], json.loads(plain)["properties"]["qi_owner"]) == ("normal", "")

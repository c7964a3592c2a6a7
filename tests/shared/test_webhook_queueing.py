"""Webhook deliveries are queued by the very script that changes the job's status (finish,
cancel, start's running and expired, the lost-job sweep, a cached result's create), into
the webhook queue's fair list, so that no crash between the two can lose one; and the
bounds of one key's attempts (in flight, circuit breaker) hold in Redis. Real Redis."""

import base64
import json
import time
import uuid

import pytest
from celery import Celery

from shared.broker import make_celery, webhook_hooks, webhook_message
from shared.broker.layout import DOORBELL
from shared.jobstore import JobStore, Keyspace
from shared.schemas import Prediction, WebhookEvent
from shared.settings import Settings
from tests.utils.jobs import make_job

CELERY: Celery = make_celery(Settings(), "tests")
PREDICTION = '{"label": "7", "score": 0.9, "top_k": [{"label": "7", "score": 0.9}]}'
URL = "https://hooks.example.com/in"


@pytest.fixture
def hooked(redis_server) -> tuple[JobStore, str]:
    """A store whose scripts queue webhooks, on a webhook queue of its own."""
    queue = f"hooks-{uuid.uuid4().hex}"
    return JobStore.connect(redis_server.url, ttl_seconds=600, timeout=2, hooks=webhook_hooks(CELERY, queue)), queue


def queued(client, queue: str) -> list[tuple[str, str]]:
    """(job id, event) of each delivery waiting in the webhook queue, oldest first."""
    out = []
    for raw in reversed(client.lrange(Keyspace().fair_jobs(queue, "normal", "-"), 0, -1)):
        envelope = json.loads(raw)
        body = envelope["body"]
        if envelope["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body).decode()
        args = json.loads(body)[0]
        assert envelope["headers"]["id"] == f"{args[0]}-{args[1]}"
        assert envelope["properties"]["delivery_tag"]
        out.append((args[0], args[1]))
    return out


def test_the_template_is_the_message_python_builds_but_for_its_body_encoding():
    queue = "webhooks"
    template = json.loads(webhook_hooks(CELERY, queue).completed.replace("@@job@@", "abc"))
    built = json.loads(webhook_message(CELERY, queue, "abc", "completed"))
    assert json.loads(template["body"]) == json.loads(base64.b64decode(built["body"]))
    assert template["headers"] == built["headers"]
    assert template["properties"]["delivery_tag"] == "abc-completed"
    assert (template["properties"]["qi_lane"], template["properties"]["qi_owner"]) == ("normal", "-")
    assert "body_encoding" not in template["properties"]  # kombu then takes the body as it is


def test_start_and_finish_queue_running_and_completed_with_the_status_change(hooked, redis_server):
    store, queue = hooked
    client = redis_server.client()
    both = make_job(store, webhook_url=URL, webhook_events=[WebhookEvent.running, WebhookEvent.completed])
    done_only = make_job(store, webhook_url=URL)
    silent = make_job(store)
    ids = [both.id, done_only.id, silent.id]
    store.start(ids, "run-1")
    assert queued(client, queue) == [(both.id, "running")]
    assert client.lrange(queue, 0, -1) == [DOORBELL]  # the Celery list: only the doorbell
    outcome = Prediction.model_validate_json(PREDICTION)
    assert store.finish(dict.fromkeys(ids, outcome), "run-1") == ids
    assert store.finish(dict.fromkeys(ids, outcome), "run-1") == ids  # a retried finish queues nothing again
    assert queued(client, queue) == [(both.id, "running"), (both.id, "completed"), (done_only.id, "completed")]
    assert client.hget(Keyspace().fair_state(queue), "depth:normal") == "3"
    assert client.lrange(queue, 0, -1) == [DOORBELL]


def test_cancel_expiry_sweep_and_a_cached_result_queue_completed(hooked, redis_server):
    store, queue = hooked
    client = redis_server.client()
    cancelled = make_job(store, webhook_url=URL)
    store.run(store.ops.cancel(cancelled.id))
    expired = make_job(store, webhook_url=URL, expires_in=0.01)
    time.sleep(0.05)
    [started] = store.start([expired.id], "run-2")
    assert started.expired
    cached = make_job(store, webhook_url=URL, cached_result=PREDICTION)
    lost = make_job(store, webhook_url=URL)
    store.start([lost.id], "run-3", lease_seconds=0.01)
    time.sleep(1.1)
    assert lost.id in store.sweep_lost(grace_seconds=0)
    assert queued(client, queue) == [(cancelled.id, "completed"), (expired.id, "completed"),
                                     (cached.id, "completed"), (lost.id, "completed")]
    # A store without hooks (these tests' usual one) queues nothing.
    plain = JobStore.connect(redis_server.url, ttl_seconds=600, timeout=2)
    other = make_job(plain, webhook_url=URL)
    plain.run(plain.ops.cancel(other.id))
    assert len(queued(client, queue)) == 4


def test_a_key_has_at_most_max_attempts_under_way_and_a_dead_workers_place_ends(store):
    owner, receiver = f"key-{uuid.uuid4().hex}", "hooks.example.com:443"
    gate = [store.webhook_gate(owner, receiver, f"t{n}", 0.5, 4, 60)[0] for n in range(5)]
    assert gate == ["go"] * 4 + ["busy"]
    assert store.webhook_gate("another-key", receiver, "x", 0.5, 4, 60)[0] == "go"  # another key is not held
    store.webhook_done(owner, receiver, "t0", False, 5, 60, 3600)
    assert store.webhook_gate(owner, receiver, "t5", 0.5, 4, 60)[0] == "go"
    time.sleep(0.6)  # the leases end: places held by a killed worker free themselves
    assert store.webhook_gate(owner, receiver, "t6", 0.5, 4, 60)[0] == "go"
    assert store._redis.zcard(store.keys.webhook_in_flight(owner)) == 1
    assert 0 < store._redis.ttl(store.keys.webhook_in_flight(owner)) <= 2  # bounded, and it expires


def test_the_breaker_opens_after_failures_in_a_row_and_one_probe_closes_it(store):
    owner, receiver = f"key-{uuid.uuid4().hex}", "hooks.example.com:443"

    def attempt(failed: bool) -> str:
        verdict, _ = store.webhook_gate(owner, receiver, "t", 10, 0, 0.5)
        if verdict == "go":
            store.webhook_done(owner, receiver, "t", failed, 3, 0.5, 3600)
        return verdict

    assert [attempt(True) for _ in range(3)] == ["go"] * 3  # the third failure in a row opens it
    verdict, wait = store.webhook_gate(owner, receiver, "t", 10, 0, 0.5)
    assert (verdict, 0 < wait <= 0.5) == ("open", True)
    time.sleep(0.6)
    assert attempt(True) == "go"  # the probe fails: open again
    assert attempt(False) == "open"
    time.sleep(0.6)
    assert store.webhook_gate(owner, receiver, "probe", 10, 0, 0.5)[0] == "go"  # the probe
    assert store.webhook_gate(owner, receiver, "other", 10, 0, 0.5)[0] == "open"  # only one at a time
    store.webhook_done(owner, receiver, "probe", False, 3, 0.5, 3600)  # it succeeds: closed
    assert [attempt(False) for _ in range(3)] == ["go"] * 3
    assert not store._redis.exists(store.keys.webhook_breaker(owner, receiver))
    # A success between failures resets the count: failures "in a row".
    assert [attempt(f) for f in (True, True, False, True, True)] == ["go"] * 5
    assert store.webhook_gate(owner, receiver, "t", 10, 0, 0.5)[0] == "go"
    assert 0 < store._redis.ttl(store.keys.webhook_breaker(owner, receiver)) <= 3600

"""Noisy neighbour, webhooks: key A's receiver accepts connections and never answers while A
makes about 10 deliveries a second; key B's deliveries all arrive within a few seconds of
their jobs' end, and none of A's is lost (each waits in Redis: deferred, retried or being
attempted). Real Redis, a real webhook worker and real receivers on loopback; the jobs are
cached results, finished by the same create script as the API's, which queues their
deliveries (the webhook path alone is under test)."""

import threading
import time

import pytest

from devstack.processes import RedisServer, Worker, free_port, wait_for
from shared.broker import make_celery, webhook_hooks
from shared.jobstore import JobStore, Keyspace
from shared.settings import Settings
from tests.utils.jobs import make_job
from tests.utils.processes import new_key
from tests.utils.receiver import Receiver, Silent

QUEUE = "webhooks"
PREDICTION = '{"label": "7", "score": 0.9, "top_k": [{"label": "7", "score": 0.9}]}'
A_PER_SECOND, A_SECONDS = 10, 15
B_JOBS = 12
B_BOUND = 5.0  # seconds from a B job's end to its delivery, at most (alone: ~0.02 s)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("neighbours-hooks"))
    server.start()
    yield server
    server.stop()


def ids_waiting(client) -> set[str]:
    """Job ids of every delivery held in Redis: queued, scheduled, or taken by a worker."""
    keys = Keyspace()
    messages = [*client.lrange(keys.fair_jobs(QUEUE, "normal", "-"), 0, -1),
                *client.lrange(keys.fair_jobs(QUEUE, "low", "-"), 0, -1),
                *client.zrange(keys.webhook_retries(QUEUE), 0, -1), *client.hvals("unacked")]
    return {job_id for message in messages for job_id in _job_ids(message)}


def _job_ids(message: str) -> list[str]:
    # A task id is "<job id>-<event>[-<attempt>]"; job ids are 32 hex digits.
    at = message.find('"id": "')
    return [message[at + 7:at + 39]] if at >= 0 else []


def test_a_hanging_receiver_does_not_delay_another_keys_webhooks(server, logdir):
    env = dict(webhook_allowed_hosts="127.0.0.1", webhook_queue=QUEUE, webhook_timeout_seconds=5)
    sender = Worker(server.url, logdir, app="worker.webhooks.app", **env)
    silent, receiver = Silent(), Receiver(free_port()).start()
    store = JobStore.connect(server.url, ttl_seconds=600, timeout=5,
                             hooks=webhook_hooks(make_celery(Settings(), "tests"), QUEUE))
    (_, a), (_, b) = new_key(server.url), new_key(server.url)
    a_jobs: list[str] = []

    def flood() -> None:
        for n in range(A_PER_SECOND * A_SECONDS):
            a_jobs.append(make_job(store, webhook_url=silent.url(f"/a{n}"), owner=a, cached_result=PREDICTION).id)
            time.sleep(1 / A_PER_SECOND)

    try:
        flooding = threading.Thread(target=flood)
        flooding.start()
        time.sleep(3)  # A's attempts hang by now, and its deliveries pile up
        b_jobs = {}
        for n in range(B_JOBS):
            job = make_job(store, webhook_url=receiver.url(f"/b{n}"), owner=b, cached_result=PREDICTION)
            b_jobs[f"/b{n}"] = float(job.fields["finished_at"])
            time.sleep(0.8)
        wait_for(lambda: all(receiver.to(path) for path in b_jobs), 30, "B's deliveries")
        delays = {path: receiver.to(path)[0]["at"] - finished for path, finished in b_jobs.items()}
        assert max(delays.values()) <= B_BOUND, delays
        flooding.join()
        # Nothing of A's lost: every delivery is still held in Redis, none given up.
        client = server.client()
        missing = set(a_jobs) - ids_waiting(client)
        assert not missing, f"{len(missing)} of A's {len(a_jobs)} deliveries are nowhere"
        states = [store.get(job_id) for job_id in a_jobs]
        assert not [s for s in states if s is None or (s.webhook and s.webhook.status == "failed")]
        # A held at most WEBHOOK_MAX_IN_FLIGHT_PER_KEY connections at once, however many it queued.
        assert client.zcard(Keyspace().webhook_in_flight(a)) <= Settings().webhook_max_in_flight_per_key
        assert len(silent.held) <= 4 + Settings().webhook_breaker_failures * 2
    finally:
        silent.stop()
        receiver.stop()
        sender.stop()

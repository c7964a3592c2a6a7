"""Noisy neighbour, record budget (issue #19, part D): key A loops cached submissions of one
image at full speed, each with a webhook to a receiver that never answers, while key B
submits new images at a steady rate. What Redis holds for A never passes A's budget; every
one of B's submissions is accepted and its job succeeds; nothing is lost.

Real parts: redis-server, the API (result cache on), the inference and webhook workers, a
TCP listener that accepts connections and never answers."""

import socket
import threading
import time

import httpx
import pytest

from devstack.processes import RedisServer, Worker
from tests.utils.held import held_in_redis
from tests.utils.processes import new_key, start_api
from tests.utils.samples import heldout_png

SECONDS = 20  # how long A abuses and B submits
A_BUDGET = 150
B_EVERY = 0.5  # seconds between B's submissions


@pytest.fixture(scope="module")
def hanging_receiver():
    """A listener that never accepts: connections wait in its backlog, requests time out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    listener.close()


@pytest.fixture(scope="module")
def neighbours(tmp_path_factory, logdir):
    server = RedisServer(tmp_path_factory.mktemp("neighbours-redis"))
    server.start()
    env = dict(webhook_allowed_hosts="127.0.0.1", webhook_timeout_seconds=1, webhook_backoff_seconds=0.5,
               webhook_backoff_max_seconds=2)
    api = start_api(server.url, logdir, result_cache_ttl_seconds=3600, **env)
    workers = [Worker(server.url, logdir, **env), Worker(server.url, logdir, app="worker.webhooks.app", **env)]
    yield server, api
    for process in (*workers, api):
        process.stop()
    server.stop()


def client_for(api, key: str) -> httpx.Client:
    return httpx.Client(base_url=api.url, timeout=30, headers={"Authorization": f"Bearer {key}"})


def test_a_cached_loop_with_hanging_webhooks_stays_within_its_budget(neighbours, hanging_receiver):
    server, api = neighbours
    a_key, a_id = new_key(server.url, max_records=A_BUDGET)
    b_key, _ = new_key(server.url, max_records=A_BUDGET)
    stop = threading.Event()
    a_statuses: list[int] = []
    samples: list[int] = []

    def abuse() -> None:
        with client_for(api, a_key) as client:
            job = client.post("/jobs", files={"file": ("a.png", heldout_png(0))}).json()
            client.get(f"/jobs/{job['id']}", params={"wait": 30})  # its result is cached from now on
            while not stop.is_set():
                a_statuses.append(client.post("/jobs", files={"file": ("a.png", heldout_png(0))},
                                              data={"webhook_url": hanging_receiver}).status_code)

    def sample() -> None:
        client = server.client()
        while not stop.wait(1):
            samples.append(sum(held_in_redis(client, a_id).values()))

    threads = [threading.Thread(target=abuse), threading.Thread(target=sample)]
    for thread in threads:
        thread.start()
    b_jobs, b_statuses = [], []
    try:
        with client_for(api, b_key) as client:
            started = time.monotonic()
            for i in range(int(SECONDS / B_EVERY)):
                time.sleep(max(0.0, started + i * B_EVERY - time.monotonic()))
                response = client.post("/jobs", files={"file": (f"{i}.png", heldout_png(100 + i))})
                b_statuses.append(response.status_code)
                if response.status_code == 202:
                    b_jobs.append(response.json()["id"])
            stop.set()
            for thread in threads:
                thread.join(60)
            ends = [client.get(f"/jobs/{job_id}", params={"wait": 60}).json()["status"] for job_id in b_jobs]
    finally:
        stop.set()
    assert b_statuses == [202] * len(b_statuses), b_statuses  # B was never refused
    assert ends == ["succeeded"] * len(b_jobs), ends  # and none of its jobs was lost
    assert 429 in a_statuses, "A never reached its budget: the test proves nothing"
    assert set(a_statuses) <= {200, 429}, set(a_statuses)
    assert a_statuses.count(200) >= A_BUDGET - 2  # A got its budget's worth (its first job, a sample's lag)
    assert samples, "no sample was taken"
    assert max(samples) <= A_BUDGET, samples
    assert sum(held_in_redis(server.client(), a_id).values()) <= A_BUDGET

"""Noisy neighbour, models (issue #19, part 5): key A alternates digits:1 and digits:2, both
marked loadable by an admin (the worst an admin allows), while key B submits to the default
(digits:3) at a steady rate. With MAX_LOADED_VERSIONS=2 every switch used to unload the other
version and load it again on the model thread, blocking B's batches. Now: B's jobs all
succeed within a generous bound; the worker starts at most one on-demand load per
MODEL_LOAD_COOLDOWN_SECONDS (a count from its log, not a timing); every job of A's ends
(nothing is lost or left waiting); and a key naming a version nobody marked gets 409.

A real Redis, inference worker and API on a MODEL_DIR of copies of digits:1."""

import threading
import time

import httpx
import pytest

from devstack.processes import RedisServer, Worker, wait_for
from tests.utils.processes import new_key, start_api
from tests.utils.versions import digits_versions

COOLDOWN = 3.0  # MODEL_LOAD_COOLDOWN_SECONDS, lowered from 30 to see several loads in a short test
SECONDS = 12.0  # how long A and B submit
B_EVERY = 0.1  # B: 10 jobs/s
A_EVERY = 0.1  # A: 10 jobs/s, switching version every job
GENEROUS = 20.0  # seconds: any job of B's ends within this


@pytest.fixture(scope="module")
def stack(tmp_path_factory, logdir):
    models = digits_versions(tmp_path_factory.mktemp("models"), "1", "2", "3")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    settings = {"model_dir": models, "max_loaded_versions": 2, "model_load_cooldown_seconds": COOLDOWN}
    worker = Worker(server.url, logdir, **settings)
    api = start_api(server.url, logdir, **settings)
    admin_key, _ = new_key(server.url, admin=True)
    clients = {name: httpx.Client(base_url=api.url, timeout=30, headers={"Authorization": f"Bearer {key}"})
               for name, key in (("admin", admin_key), ("a", new_key(server.url)[0]), ("b", new_key(server.url)[0]))}
    yield api, worker, clients
    for client in clients.values():
        client.close()
    api.stop()
    worker.stop()
    server.stop()


def submit(client: httpx.Client, image: bytes, model: str) -> httpx.Response:
    return client.post("/jobs", files={"file": ("7.png", image, "image/png")}, data={"model": model})


def steady(client: httpx.Client, image: bytes, models: list[str], every: float, until: float,
           out: list[tuple[str, float]]) -> None:
    """Submit one job every `every` seconds until `until`, cycling through `models`."""
    n = 0
    while time.monotonic() < until:
        answer = submit(client, image, models[n % len(models)])
        assert answer.status_code == 202, answer.text
        out.append((answer.json()["id"], time.monotonic()))
        n += 1
        time.sleep(every)


def ended(client: httpx.Client, job_id: str, timeout: float) -> dict:
    return wait_for(lambda: (j := client.get(f"/jobs/{job_id}").json())["status"] in
                    ("succeeded", "failed", "cancelled") and j, timeout, f"job {job_id}")


def test_a_key_alternating_versions_cannot_thrash_the_worker(stack, digit_png):
    _api, worker, clients = stack
    # Not marked: a tenant's job naming a version no worker has loaded gets 409, nothing recorded.
    refused = submit(clients["a"], digit_png, "digits:1")
    assert refused.status_code == 409, refused.text
    for version in ("1", "2"):
        assert clients["admin"].post(f"/models/digits/versions/{version}/loadable").status_code == 200
    until = time.monotonic() + SECONDS
    a_jobs: list[tuple[str, float]] = []
    b_jobs: list[tuple[str, float]] = []
    alternating = ["digits:1", "digits:2"]
    a = threading.Thread(target=steady, args=(clients["a"], digit_png, alternating, A_EVERY, until, a_jobs))
    a.start()
    steady(clients["b"], digit_png, ["digits"], B_EVERY, until, b_jobs)
    a.join()
    assert len(b_jobs) > SECONDS / B_EVERY / 3
    assert len(a_jobs) > SECONDS / A_EVERY / 3
    for job_id, _ in b_jobs:  # B: every job succeeds, on the default, within a generous bound
        job = ended(clients["b"], job_id, GENEROUS)
        assert (job["status"], job["model"]["version"], job["result"]["label"]) == ("succeeded", "3", "7"), job
    for job_id, _ in a_jobs:  # A: nothing lost, nothing left waiting (it waits for loads, or is refused)
        job = ended(clients["a"], job_id, COOLDOWN * 4 + GENEROUS)
        assert job["status"] == "succeeded" or job["error"]["code"] == "model_unavailable", job
    # The bound: one on-demand load per cooldown, however often A switched (it switched
    # ~SECONDS / A_EVERY times; each switch used to be a load).
    loads = worker.log.read_text().count("on demand (jobs wait for it)")
    assert 1 <= loads <= SECONDS / COOLDOWN + 2, loads

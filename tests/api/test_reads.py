"""Reads are bounded too (issue #19, 6): GET /jobs, GET /jobs/{id} and GET /batches/{id}
spend a per-key read rate of their own (429 beyond, submissions untouched), and each key
holds at most MAX_LONG_POLLS_PER_KEY long-polls at once per API process. Real Redis, real
API processes; no worker, so the jobs stay queued until cancelled."""

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from devstack.processes import RedisServer, wait_for
from shared.jobstore import Keyspace
from shared.keystore import KeyStore
from tests.api.test_door import gauge
from tests.api.test_priority import keys_cli
from tests.utils.processes import new_key, start_api
from tests.utils.samples import heldout_png

PROBLEM = "application/problem+json"


def client_for(api, key: str) -> httpx.Client:
    return httpx.Client(base_url=api.url, timeout=60, headers={"Authorization": f"Bearer {key}"})


@pytest.fixture
def quiet_stack(tmp_path, logdir):
    """A Redis and an API of their own, no worker, at most 2 long-polls per key."""
    server = RedisServer(tmp_path)
    server.start()
    api = start_api(server.url, logdir, max_long_polls_per_key=2)
    yield server, api
    api.stop()
    server.stop()


def test_reads_spend_a_rate_of_their_own(quiet_stack):
    server, api = quiet_stack
    key, key_id = new_key(server.url, read_rate_limit=3)
    with client_for(api, key) as client:
        assert client.get("/jobs").status_code == 200
        assert client.get("/jobs/0123456789abcdef0123456789abcdef").status_code == 404  # a read all the same
        assert client.get("/batches/0123456789abcdef0123456789abcdef").status_code == 404
        refused = client.get("/jobs", params={"status": "queued"})
        assert refused.status_code == 429
        assert refused.headers["content-type"] == PROBLEM
        assert "3 job reads per minute" in refused.json()["detail"]
        assert 1 <= int(refused.headers["retry-after"]) <= 20  # one read each 20 s
        assert refused.headers["ratelimit-limit"] == "3"
        assert refused.headers["ratelimit-remaining"] == "0"
        for path in ("/jobs/x", "/batches/x"):
            assert client.get(path).status_code == 429, path
        # Submissions have a bucket of their own, and other routes none.
        submitted = client.post("/jobs", files={"file": ("a.png", heldout_png(1))})
        assert submitted.status_code == 202
        assert client.get("/models").status_code == 200
    assert server.client().pttl(Keyspace().read_rate(key_id)) > 0, "the state expires"
    # Another key reads on.
    assert api.http.get("/jobs").status_code == 200


def test_the_keys_cli_sets_a_keys_read_rate(quiet_stack):
    server, api = quiet_stack
    name = f"reader-{time.monotonic_ns()}"
    created = keys_cli(server, "create", name, "--read-rate", "2/minute")
    assert created.returncode == 0, created.stderr
    store = KeyStore(server.client(), Keyspace())
    record = store.by_name(name)
    assert record is not None
    assert record.read_rate_limit == 2
    with client_for(api, created.stdout.strip()) as client:
        assert [client.get("/jobs").status_code for _ in range(3)] == [200, 200, 429]
        changed = keys_cli(server, "set", name, "--read-rate", "10/second")
        assert changed.returncode == 0, changed.stderr
        assert "reads/min 600" in changed.stdout
        wait_for(lambda: client.get("/jobs").status_code == 200, 10, "the new read rate")
    assert "reads/min" in keys_cli(server, "list").stdout


def test_long_polls_per_key_are_capped(quiet_stack):
    server, api = quiet_stack
    job_id = api.submit(heldout_png(2)).json()["id"]  # stays queued: no worker
    with ThreadPoolExecutor(2) as pool:
        polls = [pool.submit(api.http.get, f"/jobs/{job_id}", params={"wait": 50}) for _ in range(2)]
        wait_for(lambda: gauge(api, "http_long_polls") == 2, 10, "two long-polls held")
        refused = api.http.get(f"/jobs/{job_id}", params={"wait": 50})
        assert refused.status_code == 429
        assert "already holds 2 long-polls" in refused.json()["detail"]
        assert refused.headers["retry-after"] == "1"
        assert api.http.get(f"/batches/{job_id}", params={"wait": 5}).status_code == 429
        assert api.http.get(f"/jobs/{job_id}").status_code == 200, "a read without wait goes on"
        # A submission's Prefer: wait over the cap is answered at once: the job is queued.
        started = time.monotonic()
        preferred = api.http.post("/jobs", files={"file": ("a.png", heldout_png(3))}, headers={"Prefer": "wait=30"})
        assert preferred.status_code == 202
        assert "preference-applied" not in preferred.headers
        assert time.monotonic() - started < 20
        # Another key is not held back by this one's.
        other, _ = new_key(server.url)
        with client_for(api, other) as client:
            theirs = client.post("/jobs", files={"file": ("a.png", heldout_png(4))}).json()["id"]
            assert client.get(f"/jobs/{theirs}", params={"wait": 0.5}).status_code == 200
        assert api.http.delete(f"/jobs/{job_id}").status_code == 200  # ends the two long-polls
        assert [poll.result().json()["status"] for poll in polls] == ["cancelled", "cancelled"]
    assert gauge(api, "http_long_polls") == 0
    assert api.http.get(f"/jobs/{job_id}", params={"wait": 1}).status_code == 200, "the cap is free again"

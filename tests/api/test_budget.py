"""The per-key record budget (issue #19, part D): real Redis, real API, a real worker where a
result must be inferred before it is cached.

A key holding its MAX_RECORDS (--max-records) gets 429 and nothing is written; another key
is still accepted; cached results count, Idempotency-Key replays do not count again, a batch
over the budget is refused whole, and the budget frees as the records expire."""

import os
import subprocess
import sys
import time

import httpx
import pytest

from devstack.processes import wait_for
from shared.jobstore import Keyspace
from shared.keystore import KeyStore
from tests.utils.held import held_in_redis
from tests.utils.processes import new_key, start_api
from tests.utils.samples import heldout_png

KEYS = Keyspace()


@pytest.fixture(scope="module")
def cached_api(redis_server, logdir):
    """An API with the result cache on (the session API has it off)."""
    api = start_api(redis_server.url, logdir, result_cache_ttl_seconds=3600)
    yield api
    api.stop()


def client_for(api, key: str) -> httpx.Client:
    return httpx.Client(base_url=api.url, timeout=30, headers={"Authorization": f"Bearer {key}"})


def post(client: httpx.Client, image: bytes, **headers: str) -> httpx.Response:
    return client.post("/jobs", files={"file": ("x.png", image)}, headers=headers)


def refused_for_budget(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    detail = response.json()["detail"]
    assert "record budget" in detail, detail
    assert f"its limit is {limit}" in detail, detail
    assert int(response.headers["retry-after"]) >= 1


def infer_once(client: httpx.Client, image: bytes) -> None:
    """The image's result, inferred by the worker: cached for the key from now on."""
    job = post(client, image).json()
    assert client.get(f"/jobs/{job['id']}", params={"wait": 30}).json()["status"] == "succeeded"


def test_a_key_over_its_budget_gets_429_and_nothing_is_written(api, worker, redis_server):
    key, key_id = new_key(redis_server.url, max_records=5)
    other, _ = new_key(redis_server.url, max_records=5)
    with client_for(api, key) as mine, client_for(api, other) as theirs:
        for i in range(5):
            assert post(mine, heldout_png(i)).status_code == 202
        before = held_in_redis(redis_server.client(), key_id)
        assert before == {"jobs": 5, "idem": 0, "batches": 0}
        for i in range(3):
            refused_for_budget(post(mine, heldout_png(10 + i), **{"Idempotency-Key": f"late-{i}"}), 5)
        assert held_in_redis(redis_server.client(), key_id) == before  # no record, no Idempotency-Key
        assert len(mine.get("/jobs", params={"limit": 100}).json()["jobs"]) == 5
        assert post(theirs, heldout_png(0)).status_code == 202  # another key is not affected
        # Finished jobs still count: their records are kept FINISHED_JOB_TTL_SECONDS.
        for job in mine.get("/jobs", params={"limit": 100}).json()["jobs"]:
            assert mine.get(f"/jobs/{job['id']}", params={"wait": 30}).json()["status"] == "succeeded"
        refused_for_budget(post(mine, heldout_png(20)), 5)


def test_cached_results_count(cached_api, worker, redis_server):
    key, key_id = new_key(redis_server.url, max_records=4)
    with client_for(cached_api, key) as client:
        infer_once(client, heldout_png(3))
        for _ in range(3):
            cached = post(client, heldout_png(3))
            assert cached.status_code == 200
            assert cached.json()["status"] == "succeeded"
        refused_for_budget(post(client, heldout_png(3)), 4)
    assert held_in_redis(redis_server.client(), key_id)["jobs"] == 4


def test_idempotency_replays_do_not_count_again(cached_api, worker, redis_server):
    key, key_id = new_key(redis_server.url, max_records=4)
    with client_for(cached_api, key) as client:
        # A queued job's Idempotency-Key outlives a finished record (JOB_TTL_SECONDS): 2 records.
        first = post(client, heldout_png(4), **{"Idempotency-Key": "once"})
        assert first.status_code == 202
        for _ in range(5):
            replay = post(client, heldout_png(4), **{"Idempotency-Key": "once"})
            assert replay.status_code == 200
            assert replay.json()["id"] == first.json()["id"]
        assert client.get(f"/jobs/{first.json()['id']}", params={"wait": 30}).json()["status"] == "succeeded"
        # A cached result's key lives as long as its record: 1 record for both.
        cached = post(client, heldout_png(4), **{"Idempotency-Key": "cached"})
        assert cached.status_code == 200
        for _ in range(5):
            assert post(client, heldout_png(4), **{"Idempotency-Key": "cached"}).json()["id"] == cached.json()["id"]
        assert held_in_redis(redis_server.client(), key_id) == {"jobs": 2, "idem": 2, "batches": 0}
        assert post(client, heldout_png(4)).status_code == 200  # the 4th record
        refused_for_budget(post(client, heldout_png(4)), 4)
        # A replay is still answered at the limit: it writes nothing.
        assert post(client, heldout_png(4), **{"Idempotency-Key": "once"}).json()["id"] == first.json()["id"]
    assert redis_server.client().ttl(KEYS.idempotency(f"{key_id}:cached")) <= 3600


def test_a_batch_over_the_budget_is_refused_whole(api, redis_server):
    key, key_id = new_key(redis_server.url, max_records=5)
    files = [("files", (f"{i}.png", heldout_png(i))) for i in range(6)]
    with client_for(api, key) as client:
        refused_for_budget(client.post("/jobs/batch", files=files[:5]), 5)  # 5 jobs + the batch's record
        refused_for_budget(client.post("/predict/batch", files=files), 5)  # 6 jobs (no batch record)
        assert held_in_redis(redis_server.client(), key_id) == {"jobs": 0, "idem": 0, "batches": 0}
        accepted = client.post("/jobs/batch", files=files[:4])  # 4 jobs + the batch: 5
        assert accepted.status_code == 202
        assert accepted.json()["batch_id"]
        assert held_in_redis(redis_server.client(), key_id) == {"jobs": 4, "idem": 0, "batches": 1}
        refused_for_budget(post(client, heldout_png(9)), 5)


def test_the_budget_frees_as_records_expire(redis_server, logdir, worker):
    api = start_api(redis_server.url, logdir, result_cache_ttl_seconds=3600, finished_job_ttl_seconds=2)
    try:
        key, key_id = new_key(redis_server.url, max_records=3)
        with client_for(api, key) as client:
            infer_once(client, heldout_png(5))  # the worker keeps this one 1 h (its own setting)
            for _ in range(2):
                assert post(client, heldout_png(5)).status_code == 200  # cached: kept 2 s
            refused = post(client, heldout_png(5))
            refused_for_budget(refused, 3)
            assert int(refused.headers["retry-after"]) <= 3  # the next cached record's expiry
            time.sleep(int(refused.headers["retry-after"]) + 1)
            assert post(client, heldout_png(5)).status_code == 200
            # The budget's set is pruned as it is used: the expired entries are gone.
            assert redis_server.client().zcard(KEYS.active(key_id)) == 2
    finally:
        api.stop()


def test_an_operator_raises_a_keys_budget_with_the_cli(api, redis_server):
    key, key_id = new_key(redis_server.url, max_records=2)
    name = KeyStore(redis_server.client(), KEYS).get(key_id).name
    with client_for(api, key) as client:
        for i in range(2):
            assert post(client, heldout_png(30 + i)).status_code == 202
        refused_for_budget(post(client, heldout_png(32)), 2)
        cli = subprocess.run([sys.executable, "-m", "api.keys", "set", name, "--max-records", "3"],
                             env={**os.environ, "REDIS_URL": redis_server.url}, capture_output=True, text=True)
        assert cli.returncode == 0, cli.stderr
        assert "max records 3" in cli.stdout
        # The API sees the change within KEY_CACHE_SECONDS.
        wait_for(lambda: post(client, heldout_png(32)).status_code == 202, 10, "the raised budget")
        refused_for_budget(post(client, heldout_png(33)), 3)

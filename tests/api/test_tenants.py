"""API keys and tenants (issue #10): real Redis, real API, a real worker where jobs must run.

Two keys cannot see, list, wait on, cancel, replay or cache-probe each other's jobs; a
revoked key gets 401 within a second; the rate limit answers 429 with a correct Retry-After and
recovers after it; the queued-jobs quota holds under 64 concurrent submits."""

import asyncio
import time

import httpx
import pytest
import redis

from devstack.processes import wait_for
from shared.jobstore import Keyspace
from shared.keystore import KeyStore
from tests.utils.jobs import waiting
from tests.utils.processes import new_key, start_api
from tests.utils.samples import heldout_png

PROBLEM = "application/problem+json"


def client_for(api, key: str) -> httpx.Client:
    return httpx.Client(base_url=api.url, timeout=30, headers={"Authorization": f"Bearer {key}"})


@pytest.fixture
def other(api, redis_server):
    """A second key's client on the same API."""
    key, _ = new_key(redis_server.url)
    with client_for(api, key) as client:
        yield client


def test_every_route_but_health_and_docs_needs_a_key(api):
    anonymous = httpx.Client(base_url=api.url, timeout=10)
    for path in ("/healthz", "/readyz", "/docs", "/redoc", "/openapi.json"):
        assert anonymous.get(path).status_code == 200, path
    for method, path in (("GET", "/jobs"), ("GET", "/jobs/x"), ("DELETE", "/jobs/x"), ("POST", "/jobs"),
                         ("GET", "/models"), ("POST", "/predict"), ("POST", "/jobs/batch")):
        for headers in ({}, {"Authorization": "Bearer qi_not-a-key"}, {"Authorization": "Basic dXNlcjpwdw=="}):
            response = anonymous.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.headers["content-type"] == PROBLEM
            assert "python -m api.keys create" in response.json()["detail"]


def test_two_keys_cannot_touch_each_others_jobs(api, worker, other):
    mine = api.http.post("/jobs", files={"file": ("7.png", heldout_png(7))}, headers={"Idempotency-Key": "k1"})
    assert mine.status_code == 202
    job_id = mine.json()["id"]
    assert api.http.get(f"/jobs/{job_id}", params={"wait": 20}).json()["status"] == "succeeded"
    unknown = other.get("/jobs/0123456789abcdef0123456789abcdef")
    # Another key's job answers exactly like an unknown id, at once whatever the wait.
    started = time.monotonic()
    for response in (other.get(f"/jobs/{job_id}"), other.get(f"/jobs/{job_id}", params={"wait": 10}),
                     other.delete(f"/jobs/{job_id}"), other.post(f"/jobs/{job_id}/cancel")):
        assert response.status_code == 404
        assert response.json()["detail"] == unknown.json()["detail"].replace("0123456789abcdef" * 2, job_id)
    assert time.monotonic() - started < 5
    assert job_id not in {job["id"] for job in other.get("/jobs", params={"limit": 100}).json()["jobs"]}
    assert job_id in {job["id"] for job in api.http.get("/jobs", params={"limit": 100}).json()["jobs"]}
    # The same Idempotency-Key from another key is another request: a new job, not a replay.
    theirs = other.post("/jobs", files={"file": ("7.png", heldout_png(7))}, headers={"Idempotency-Key": "k1"})
    assert theirs.status_code == 202
    assert theirs.json()["id"] != job_id
    assert api.http.get(f"/jobs/{theirs.json()['id']}").status_code == 404
    # Listing every key's jobs takes an admin key.
    assert api.http.get("/jobs", params={"owner": "all"}).status_code == 403


def test_the_result_cache_is_per_key(redis_server, logdir, worker):
    api = start_api(redis_server.url, logdir, result_cache_ttl_seconds=600)
    key, _ = new_key(redis_server.url)
    try:
        image = heldout_png(3)
        first = api.http.post("/jobs", files={"file": ("a.png", image)}, headers={"Prefer": "wait=20"}).json()
        assert first["status"] == "succeeded"
        again = api.http.post("/jobs", files={"file": ("a.png", image)}).json()
        assert again["cached"] is True, "the same key hits its own cache"
        with client_for(api, key) as other:
            probe = other.post("/jobs", files={"file": ("a.png", image)}).json()
        assert probe["cached"] is False, "another key learns nothing of what this one sent"
    finally:
        api.stop()


def test_an_admin_key_lists_every_keys_jobs(api, redis_server, store):
    mine = api.submit(heldout_png(1)).json()["id"]
    key, _ = new_key(redis_server.url, admin=True)
    with client_for(api, key) as admin:
        every = admin.get("/jobs", params={"owner": "all", "limit": 100}).json()["jobs"]
        own = admin.get("/jobs", params={"limit": 100}).json()["jobs"]
    assert mine in {job["id"] for job in every}
    assert mine not in {job["id"] for job in own}


def test_a_revoked_key_gets_401_within_a_second(api, redis_server):
    keys = KeyStore(redis.Redis.from_url(redis_server.url, decode_responses=True), Keyspace())
    record, key = keys.create("to-revoke", rate_limit=1000)
    with client_for(api, key) as client:
        assert client.get("/jobs").status_code == 200
        assert keys.get(record.id).last_used_at is not None
        assert keys.revoke("to-revoke")
        revoked = time.monotonic()
        # The API remembers a key for at most a second.
        response = wait_for(lambda: next(r for r in [client.get("/jobs")] if r.status_code == 401), 5, "a 401")
        assert time.monotonic() - revoked < 1.5
    assert "unknown or revoked" in response.json()["detail"]


def test_the_rate_limit_counts_every_file_answers_429_and_recovers(private_stack):
    server, api = private_stack  # no worker: nothing needs to run
    key, _ = new_key(server.url, rate_limit=60)  # one a second, 60 at once
    with client_for(api, key) as client:
        batch = client.post("/jobs/batch", files=[("files", (f"{i}.png", heldout_png(i))) for i in range(60)])
        assert batch.status_code == 202
        assert batch.headers["ratelimit-limit"] == "60"
        assert batch.headers["ratelimit-remaining"] == "0"
        queued = waiting(server.client())
        refused = client.post("/jobs", files={"file": ("a.png", heldout_png(0))})
        assert refused.status_code == 429
        assert refused.headers["content-type"] == PROBLEM
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["ratelimit-remaining"] == "0"
        assert int(refused.headers["ratelimit-reset"]) >= 59
        assert waiting(server.client()) == queued, "nothing queued"
        time.sleep(1.1)
        assert client.post("/jobs", files={"file": ("a.png", heldout_png(0))}).status_code == 202


def test_the_queued_jobs_quota_holds_under_64_concurrent_submits(private_stack):
    server, api = private_stack  # no worker: every accepted job stays queued
    key, key_id = new_key(server.url, max_queued=10)

    async def burst() -> list[int]:
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=api.url, timeout=60, headers=headers,
                                     limits=httpx.Limits(max_connections=64)) as client:
            responses = await asyncio.gather(*(client.post("/jobs", files={"file": (f"{i}.png", heldout_png(i))})
                                               for i in range(64)))
        for response in responses:
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) > 0
                assert response.headers["ratelimit-limit"] == "10"
        return [response.status_code for response in responses]

    statuses = asyncio.run(burst())
    assert statuses.count(202) == 10, statuses
    assert statuses.count(429) == 54, statuses
    assert server.client().zcard(Keyspace().active(key_id)) == 10
    assert waiting(server.client()) == 10

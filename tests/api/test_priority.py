"""Priority lanes and Cancel-After (issue #20, the API's part): real API and Redis. What the
API answers and what it writes to the job's record and the key's; which job a worker takes
first is the queue's (tests/worker).

- `priority` (high | normal | low) on every submission route, stored in the record and
  returned; above the key's max_priority: 403, nothing written; admin keys may use any.
- `python -m api.keys set` changes a key's record, and its weight in `fair:weights` too.
- The Cancel-After header sets the deadline as expires_in does (the earlier wins), is a
  replay under the same Idempotency-Key, and a bad one is a 422 naming it.
"""

import os
import subprocess
import sys
from datetime import datetime

import httpx
import pytest

from api.deps import MAX_EXPIRES_IN, duration_seconds
from devstack.processes import wait_for
from shared.jobstore import Keyspace, to_job
from shared.keystore import KeyStore
from shared.schemas import Priority
from tests.utils.processes import new_key
from tests.utils.samples import heldout_png

PROBLEM = "application/problem+json"
KEYS = Keyspace()


def client_for(api, key: str) -> httpx.Client:
    return httpx.Client(base_url=api.url, timeout=30, headers={"Authorization": f"Bearer {key}"})


def record(redis_server, job_id: str) -> dict[str, str]:
    return redis_server.client().hgetall(KEYS.job(job_id))


def seconds_left(job: dict) -> float:
    """A job's deadline, in seconds from its creation."""
    created, expires = (datetime.fromisoformat(job[name]) for name in ("created_at", "expires_at"))
    return (expires - created).total_seconds()


@pytest.mark.parametrize(("value", "seconds"), [
    ("45", 45), ("0.5", 0.5), ("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("250ms", 0.25),
    ("1m30s", 90), ("1.5h", 5400), ("2h0m5s", 7205), ("1h1m1s1ms", 3661.001), ("0s", 0),
])
def test_durations(value, seconds):
    assert duration_seconds(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "abc", "5x", "-5s", "+5s", "1h 30m", "h", "5 s", "1e3", "1,5s", "5S",
                                   "1h2m3s4ms5s", "1234567890s", "1.1234567s", "inf", "nan", "5s\n"])
def test_bad_durations(value):
    with pytest.raises(ValueError, match="not a duration"):
        duration_seconds(value)


def test_to_job_reads_a_record_without_priority_as_normal():
    fields = {"id": "x", "status": "queued", "model_name": "digits", "model_version": "1", "created_at": "1.0"}
    assert to_job(fields).priority == Priority.normal
    assert to_job({**fields, "priority": "low"}).priority == Priority.low


def test_priority_is_stored_and_returned(api, redis_server):
    default = api.submit(heldout_png(1))
    assert default.status_code == 202, default.text
    assert default.json()["priority"] == "normal"
    assert record(redis_server, default.json()["id"])["priority"] == "normal"
    low = api.submit(heldout_png(2), priority="low")
    assert low.status_code == 202, low.text
    assert low.json()["priority"] == "low"
    assert api.http.get(f"/jobs/{low.json()['id']}").json()["priority"] == "low"
    assert record(redis_server, low.json()["id"])["priority"] == "low"
    batch = api.http.post("/jobs/batch", files=[("files", ("a.png", heldout_png(3)))] * 2, data={"priority": "low"})
    assert batch.status_code == 202, batch.text
    for item in batch.json()["items"]:
        assert item["job"]["priority"] == "low"
        assert record(redis_server, item["job"]["id"])["priority"] == "low"
    features = api.http.post("/jobs", json={"model": "iris", "features": [5.1, 3.5, 1.4, 0.2], "priority": "low"})
    assert features.status_code == 202, features.text
    assert record(redis_server, features.json()["id"])["priority"] == "low"
    bad = api.submit(heldout_png(1), priority="urgent")
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "priority"


def test_a_priority_above_the_keys_is_403_and_writes_nothing(api, redis_server):
    key, key_id = new_key(redis_server.url, rate_limit=100)  # max_priority: normal, the default
    with client_for(api, key) as client:
        refusals = [
            client.post("/jobs", files={"file": ("a.png", heldout_png(1))}, data={"priority": "high"},
                        headers={"Idempotency-Key": "high-1"}),
            client.post("/jobs/batch", files=[("files", ("a.png", heldout_png(1)))], data={"priority": "high"}),
            client.post("/jobs", json={"model": "iris", "features": [5.1, 3.5, 1.4, 0.2], "priority": "high"}),
            client.post("/predict", files={"file": ("a.png", heldout_png(1))}, data={"priority": "high"}),
            client.post("/predict/batch", files=[("files", ("a.png", heldout_png(1)))], data={"priority": "high"}),
            client.post("/predict", json={"model": "iris", "features": [5.1, 3.5, 1.4, 0.2], "priority": "high"}),
        ]
        for response in refusals:
            assert response.status_code == 403, response.text
            assert response.headers["content-type"] == PROBLEM
            detail = response.json()["detail"]
            assert "priority high" in detail, detail
            assert "highest, normal" in detail, detail
        assert client.get("/jobs").json()["jobs"] == []
        assert not redis_server.client().exists(KEYS.rate(key_id)), "no submission of the rate was spent"
        # Its own lane and below are fine.
        for lane in ("normal", "low"):
            assert client.post("/jobs", files={"file": ("a.png", heldout_png(1))},
                               data={"priority": lane}).status_code == 202


def test_admin_keys_and_keys_allowed_high_may_use_high(api, redis_server):
    admin, _ = new_key(redis_server.url, admin=True)
    allowed, _ = new_key(redis_server.url, max_priority=Priority.high)
    for key in (admin, allowed):
        with client_for(api, key) as client:
            response = client.post("/jobs", files={"file": ("a.png", heldout_png(1))}, data={"priority": "high"})
            assert response.status_code == 202, response.text
            assert response.json()["priority"] == "high"
            assert record(redis_server, response.json()["id"])["priority"] == "high"


def keys_cli(redis_server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "api.keys", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "REDIS_URL": redis_server.url, "COLUMNS": "250"})


def test_keys_cli_create_set_and_list(api, redis_server):
    name = f"fair-{os.getpid()}-{id(api)}"
    created = keys_cli(redis_server, "create", name, "--weight", "3", "--max-priority", "low")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    store = KeyStore(redis_server.client(), KEYS)
    found = store.by_name(name)
    assert found is not None
    assert (found.weight, found.max_priority) == (3, Priority.low)
    assert redis_server.client().hget(KEYS.fair_weights, found.id) == "3"
    with client_for(api, key) as client:
        assert client.post("/jobs", files={"file": ("a.png", heldout_png(1))}).status_code == 403  # normal > low

        changed = keys_cli(redis_server, "set", name, "--weight", "7", "--max-priority", "high",
                           "--rate-limit", "10/second", "--max-queued", "5")
        assert changed.returncode == 0, changed.stderr
        assert "weight 7" in changed.stdout
        found = store.by_name(name)
        assert found is not None
        assert (found.weight, found.max_priority, found.rate_limit, found.max_queued) == (7, Priority.high, 600, 5)
        assert redis_server.client().hget(KEYS.fair_weights, found.id) == "7"
        # The API remembers a key for at most KEY_CACHE_SECONDS.
        wait_for(lambda: client.post("/jobs", files={"file": ("a.png", heldout_png(1))},
                                     data={"priority": "high"}).status_code == 202, 5, "the new max priority")

    only_weight = keys_cli(redis_server, "set", name, "--weight", "2")
    assert only_weight.returncode == 0, only_weight.stderr
    found = store.by_name(name)
    assert found is not None
    assert (found.weight, found.max_priority, found.max_queued) == (2, Priority.high, 5)
    listing = keys_cli(redis_server, "list")
    assert listing.returncode == 0, listing.stderr
    header = listing.stdout.splitlines()[1]
    assert "weight" in header, listing.stdout
    assert "max priority" in header, listing.stdout
    for bad in (["set", name, "--weight", "0"], ["set", name, "--weight", "101"], ["set", name],
                ["set", name, "--max-priority", "urgent"], ["set", "no-such-key", "--weight", "2"]):
        refused = keys_cli(redis_server, *bad)
        assert refused.returncode == 2, (bad, refused.stdout, refused.stderr)
    assert redis_server.client().hget(KEYS.fair_weights, found.id) == "2"
    assert store.revoke(name)
    assert redis_server.client().hget(KEYS.fair_weights, found.id) is None


def test_keystore_checks_weights(redis_server):
    store = KeyStore(redis_server.client(), KEYS)
    with pytest.raises(ValueError, match="weight 101"):
        store.create(f"w-{os.getpid()}", weight=101)
    with pytest.raises(KeyError):
        store.set("no-such-key", weight=2)
    record_, _ = store.create(f"old-{os.getpid()}-{id(store)}")
    assert (record_.weight, record_.max_priority) == (1, Priority.normal)
    # A key made before fair share has neither field: the defaults.
    redis_server.client().hdel(KEYS.api_key(record_.id), "weight", "max_priority")
    old = store.get(record_.id)
    assert old is not None
    assert (old.weight, old.max_priority) == (1, Priority.normal)


def test_cancel_after_sets_the_deadline(api, redis_server):
    job = api.http.post("/jobs", files={"file": ("a.png", heldout_png(1))}, headers={"Cancel-After": "1h30m"}).json()
    assert seconds_left(job) == pytest.approx(5400, abs=0.01)
    assert float(record(redis_server, job["id"])["deadline"]) == pytest.approx(
        datetime.fromisoformat(job["expires_at"]).timestamp(), abs=0.01)
    assert api.http.get(f"/jobs/{job['id']}").json()["expires_at"] == job["expires_at"]
    # Both given: the earlier wins, whichever it is.
    earlier = api.http.post("/jobs", files={"file": ("a.png", heldout_png(1))}, data={"expires_in": "60"},
                            headers={"Cancel-After": "1h"}).json()
    assert seconds_left(earlier) == pytest.approx(60, abs=0.01)
    header = api.http.post("/jobs", files={"file": ("a.png", heldout_png(1))}, data={"expires_in": "3600"},
                           headers={"Cancel-After": "90s"}).json()
    assert seconds_left(header) == pytest.approx(90, abs=0.01)
    features = api.http.post("/jobs", json={"model": "iris", "features": [5.1, 3.5, 1.4, 0.2]},
                             headers={"Cancel-After": "5m"})
    assert features.status_code == 202, features.text
    assert seconds_left(features.json()) == pytest.approx(300, abs=0.01)
    batch = api.http.post("/jobs/batch", files=[("files", ("a.png", heldout_png(3)))] * 2,
                          headers={"Cancel-After": "250ms"})
    assert batch.status_code == 202, batch.text
    assert [seconds_left(item["job"]) for item in batch.json()["items"]] == pytest.approx([0.25, 0.25], abs=0.01)
    at_most = api.http.post("/jobs", files={"file": ("a.png", heldout_png(1))},
                            headers={"Cancel-After": str(MAX_EXPIRES_IN)})
    assert at_most.status_code == 202, at_most.text


def test_a_replay_with_the_same_cancel_after_is_a_replay(api):
    image = heldout_png(4)
    headers = {"Idempotency-Key": f"cancel-after-{id(api)}", "Cancel-After": "10m"}
    first = api.http.post("/jobs", files={"file": ("a.png", image)}, data={"priority": "low"}, headers=headers)
    again = api.http.post("/jobs", files={"file": ("a.png", image)}, data={"priority": "low"}, headers=headers)
    assert (first.status_code, again.status_code) == (202, 200), again.text
    assert again.json()["id"] == first.json()["id"]
    other_deadline = api.http.post("/jobs", files={"file": ("a.png", image)}, data={"priority": "low"},
                                   headers={**headers, "Cancel-After": "11m"})
    assert other_deadline.status_code == 422
    other_lane = api.http.post("/jobs", files={"file": ("a.png", image)}, headers=headers)
    assert other_lane.status_code == 422


@pytest.mark.parametrize("value", ["soon", "0", "0s", "0h0m", "-5s", "1h 30m", str(MAX_EXPIRES_IN + 1), "25h",
                                   "99999999h"])
def test_a_bad_cancel_after_is_422_naming_it(api, value):
    before = api.http.get("/jobs", params={"limit": 100}).json()["jobs"]
    for response in (api.http.post("/jobs", files={"file": ("a.png", heldout_png(1))}, headers={"Cancel-After": value}),
                     api.http.post("/jobs/batch", files=[("files", ("a.png", heldout_png(1)))],
                                   headers={"Cancel-After": value}),
                     api.http.post("/jobs", json={"model": "iris", "features": [5.1, 3.5, 1.4, 0.2]},
                                   headers={"Cancel-After": value})):
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == PROBLEM
        body = response.json()
        assert [error["field"] for error in body["errors"]] == ["Cancel-After"]
        assert body["detail"].startswith("Cancel-After: ")
    assert api.http.get("/jobs", params={"limit": 100}).json()["jobs"] == before


def test_the_document_states_priority_and_cancel_after(api):
    document = api.http.get("/openapi.json").json()
    for path in ("/jobs", "/jobs/batch"):
        operation = document["paths"][path]["post"]
        header = {p["name"]: p for p in operation["parameters"]}["cancel-after"]
        assert header["in"] == "header"
        assert header["schema"]["pattern"].startswith("^")
        assert "403" in operation["responses"]
    for path in ("/jobs", "/jobs/batch", "/predict", "/predict/batch"):
        form = document["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
        fields = document["components"]["schemas"][form.rsplit("/", 1)[1]]["properties"]
        assert "priority" in fields, path

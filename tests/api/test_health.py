"""Health, readiness, models, docs, and behaviour while Redis is down."""

import time

import httpx

from devstack.processes import wait_for
from shared.jobstore import Keyspace
from tests.utils.processes import new_key


def test_healthz(api):
    assert api.http.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_consuming_workers_on_the_ops_port(api, worker):
    body = api.ops.get("/readyz").json()
    assert body["redis"] == "ok"
    assert body["workers"] >= 1
    assert any(name.startswith(worker.name + "@") for name in body["worker_names"])
    # Per model and version: whether a live worker has it loaded, and which.
    digits = next(m for m in body["models"] if (m["name"], m["version"]) == ("digits", "1"))
    assert digits["status"] == "serving"
    assert digits["default_version"]
    assert digits["error"] is None
    assert any(name.startswith(worker.name + "@") for name in digits["workers"])


def test_the_public_readyz_says_ready_and_nothing_else(api, worker, redis_server):
    """No worker names, versions or load errors to anyone without an admin key: a probe, a
    tenant's key, a bad key alike (never a 401: a probe sends none)."""
    tenant, _ = new_key(redis_server.url)
    for headers in ({}, {"Authorization": f"Bearer {tenant}"}, {"Authorization": "Bearer qi_not-a-key"},
                    {"Authorization": "Basic dXNlcjpwdw=="}):
        response = httpx.get(f"{api.url}/readyz", headers=headers, timeout=10)
        assert response.status_code == 200, (headers, response.text)
        assert response.json() == {"status": "ok"}, headers
        assert worker.name not in response.text


def test_an_admin_key_sees_the_detail_on_the_public_readyz(api, worker, redis_server):
    admin, _ = new_key(redis_server.url, admin=True)
    body = httpx.get(f"{api.url}/readyz", headers={"Authorization": f"Bearer {admin}"}, timeout=10).json()
    assert body.keys() == api.ops.get("/readyz").json().keys() >= {"status", "workers", "worker_names", "models"}
    assert any(name.startswith(worker.name + "@") for name in body["worker_names"])


def test_models_lists_the_default_model(api, worker):
    models = api.http.get("/models").json()
    assert [(m["name"], m["default"]) for m in models] == [("digits", True), ("iris", False)]
    assert models[0] == {"name": "digits", "version": "1", "kind": "image", "input_shape": [8, 8, 1],
                         "feature_names": None, "labels": 10, "label_names": [str(d) for d in range(10)],
                         "default": True, "status": "serving", "error": None,
                         "default_version": True}


def test_openapi_docs(api):
    assert api.http.get("/docs").status_code == 200
    paths = api.http.get("/openapi.json").json()["paths"]
    assert {"/jobs", "/jobs/{job_id}", "/models", "/healthz", "/readyz"} <= set(paths)


def test_redis_down_is_503_with_retry_after_then_recovers(private_stack, digit_png):
    server, api = private_stack
    accepted = api.submit(digit_png)
    assert accepted.status_code == 202
    server.stop()

    started = time.monotonic()
    for response in (
        api.submit(digit_png),
        api.http.get(f"/jobs/{accepted.json()['id']}"),
        api.http.get("/readyz"),
        api.ops.get("/readyz"),
    ):
        assert response.status_code == 503, response.text
        assert int(response.headers["retry-after"]) > 0
        assert "unavailable" in response.json()["detail"]
    assert time.monotonic() - started < 20, "503s must come promptly, not after long hangs"
    assert api.http.get("/healthz").status_code == 200

    server.start()
    response = wait_for(lambda: (r := api.submit(digit_png)).status_code == 202 and r, 30, "recovery")
    assert response.json()["status"] == "queued"
    # AOF kept the job accepted before the outage.
    assert api.http.get(f"/jobs/{accepted.json()['id']}").status_code == 200


def test_queue_reports_queued_and_in_flight(private_stack, digit_png):
    server, api = private_stack  # no worker: what is submitted stays queued
    lanes = {"high": 0, "normal": 0, "low": 0}
    assert api.ops.get("/queue").json() == {"queued": 0, "in_flight": 0, "total": 0, "lanes": lanes}
    for _ in range(3):
        api.submit(digit_png)
    # A worker holds one (the take records it in kombu's `unacked` and in the queue's held set);
    # kombu's `unacked` also holds other queues' messages, such as Celery's pidbox replies:
    # those are not this queue's jobs in flight (the idle stack said "4 in flight").
    server.client().hset("unacked", "tag-1", "[]")
    server.client().sadd(Keyspace().held("inference"), "tag-1")
    server.client().hset("unacked", "pidbox-reply", '[{}, "reply.celery.pidbox", ""]')
    assert api.ops.get("/queue").json() == {"queued": 3, "in_flight": 1, "total": 4,
                                            "lanes": {**lanes, "normal": 3}}

"""The ops port (issue #10, item 7): /metrics and /queue answer there, not on the public port,
and the public OpenAPI document does not name them."""

import pytest

from devstack.processes import sample


@pytest.mark.parametrize("path", ["/metrics", "/queue"])
def test_ops_endpoints_answer_on_the_ops_port_only(api, path):
    public = api.http.get(path)
    assert public.status_code == 404, public.text
    assert public.headers["content-type"] == "application/problem+json"
    assert api.ops.get(path).status_code == 200


def test_the_public_document_does_not_name_them(api):
    paths = set(api.http.get("/openapi.json").json()["paths"])
    assert not {"/metrics", "/queue"} & paths
    assert {"/jobs", "/healthz", "/readyz"} <= paths


def test_the_ops_port_serves_only_its_own_routes(api):
    assert api.ops.get("/healthz").json() == {"status": "ok"}
    assert api.ops.get("/queue").json().keys() == {"queued", "in_flight", "total", "lanes"}
    for path in ("/jobs", "/models", "/docs", "/openapi.json"):
        assert api.ops.get(path).status_code == 404, path


def test_ops_requests_are_not_counted_as_public_traffic(api):
    """The public port's request metrics count the public port's requests, not the scrapes."""
    for _ in range(3):
        api.ops.get("/queue")
    metrics = api.ops.get("/metrics").text
    assert sample(metrics, "http_requests_total", method="GET", route="/queue", status="200") == 0
    assert "inference_queue_backlog_jobs" in metrics

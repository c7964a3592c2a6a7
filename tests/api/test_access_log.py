"""The access log (issue #10, item 8): one JSON line per request in the API's log, with the
request id echoed in X-Request-ID on every answer, errors included, and never the key."""

import json
import re

from devstack.processes import wait_for
from shared.settings import Settings

FIELDS = {"time", "method", "path", "status", "duration_ms", "request_id", "key_id", "job_id"}


def line_of(api, request_id: str) -> dict:
    """The access log's line for `request_id` (written as the answer ends: waited for)."""

    def find() -> dict | None:
        for line in api.log.read_text(errors="replace").splitlines():
            if line.startswith("{") and f'"request_id": "{request_id}"' in line:
                found: dict = json.loads(line)
                return found
        return None

    return wait_for(find, 10, f"the access log line of {request_id}")


def test_a_given_request_id_is_echoed_and_logged_with_the_fields(api):
    response = api.http.get("/jobs/nosuchjob", headers={"X-Request-ID": "client-id_1.a"})
    assert response.status_code == 404
    assert response.headers["x-request-id"] == "client-id_1.a"
    line = line_of(api, "client-id_1.a")
    assert set(line) == FIELDS
    assert line["method"] == "GET"
    assert line["path"] == "/jobs/nosuchjob"
    assert line["status"] == 404
    assert line["job_id"] == "nosuchjob"  # the path parameter
    assert isinstance(line["duration_ms"], float)
    assert 0 <= line["duration_ms"] < 10_000


def test_a_missing_or_unsafe_request_id_is_replaced_by_a_new_one(api):
    seen = set()
    for sent in (None, "", "has spaces", "x" * 65, "quote\"d", "new\\nline"):
        headers = {"X-Request-ID": sent} if sent is not None else {}
        response = api.http.get("/healthz", headers=headers)
        generated = response.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", generated), (sent, generated)
        seen.add(generated)
        assert line_of(api, generated)["path"] == "/healthz"
    assert len(seen) == 6  # a new one each time


def test_errors_before_routing_carry_the_request_id_too(api):
    """413 from the body limit (api.limits, before routing) and 405 from the router."""
    body = b"x" * (Settings().max_upload_bytes + 2**17)  # its Content-Length refused before it is read
    too_big = api.http.post("/jobs", content=body, headers={"X-Request-ID": "big-1"})
    assert too_big.status_code == 413
    assert too_big.headers["x-request-id"] == "big-1"
    assert line_of(api, "big-1")["status"] == 413
    not_allowed = api.http.patch("/jobs", headers={"X-Request-ID": "patch-1"})
    assert not_allowed.status_code == 405
    assert not_allowed.headers["x-request-id"] == "patch-1"
    assert line_of(api, "patch-1")["status"] == 405


def test_a_submission_logs_its_job_id(api, worker, digit_png):
    response = api.http.post("/jobs", files={"file": ("7.png", digit_png)}, headers={"X-Request-ID": "submit-1"})
    assert response.status_code == 202, response.text
    assert response.headers["x-request-id"] == "submit-1"
    job_id = response.json()["id"]
    line = line_of(api, "submit-1")
    assert (line["method"], line["path"], line["status"], line["job_id"]) == ("POST", "/jobs", 202, job_id)
    api.wait_terminal(job_id)


def test_the_key_is_never_logged(api):
    response = api.http.get("/models", headers={"Authorization": "Bearer qi_secret", "X-Request-ID": "keyed-1"})
    assert response.headers["x-request-id"] == "keyed-1"
    line = line_of(api, "keyed-1")
    assert line["path"] == "/models"
    log = api.log.read_text(errors="replace")
    assert "qi_secret" not in log
    key = getattr(api, "key", None)  # the key the tests' client sends, where the API takes keys
    if key:
        api.http.get("/models", headers={"X-Request-ID": "keyed-2"})
        assert line_of(api, "keyed-2")["key_id"] == api.key_id  # its id, logged
        assert key not in api.log.read_text(errors="replace")

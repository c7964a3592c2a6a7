"""Every error is one shape (RFC 9457 problem details with a one-sentence `detail`), every
numeric input is bounded and finite, bodies are limited while they stream, and a refused
request queues nothing."""

import asyncio
import io
import socket
import time

import httpx
import pytest
from PIL import Image

from shared.jobstore import Keyspace
from shared.settings import Settings
from tests.utils.jobs import waiting
from tests.utils.processes import start_api

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert isinstance(body["detail"], str)
    for word in words:
        assert word in body["detail"], body
    return body


@pytest.mark.parametrize(("request_kwargs", "field"), [
    ({"method": "GET", "url": "/jobs/x", "params": {"wait": 61}}, "wait"),
    ({"method": "GET", "url": "/jobs", "params": {"limit": 0}}, "limit"),
    ({"method": "POST", "url": "/jobs", "data": {"model": "digits"}}, "file"),
    ({"method": "POST", "url": "/jobs", "files": {"file": ("a", b"x")}, "data": {"expires_in": "-1"}}, "expires_in"),
])
def test_validation_errors_are_problems_naming_the_field(api, request_kwargs, field):
    body = assert_problem(api.http.request(**request_kwargs), 422, field)
    assert [error["field"] for error in body["errors"]] == [field]


@pytest.mark.parametrize("value", ["inf", "nan", "1e12", str(Settings().job_ttl_seconds + 1)])
def test_expires_in_is_finite_and_within_the_retention(api, redis_server, digit_png, value):
    queued = waiting(redis_server.client())
    assert_problem(api.submit(digit_png, expires_in=value), 422, "expires_in")
    assert waiting(redis_server.client()) == queued, "a refused job is never queued"


def test_expires_in_at_the_retention_is_accepted(api, digit_png):
    assert api.submit(digit_png, expires_in=str(Settings().job_ttl_seconds)).status_code == 202


@pytest.mark.parametrize("cursor", ["nan", "inf", "-inf", "null", "x"])
def test_bad_cursors_are_422_not_500(api, cursor):
    assert_problem(api.http.get("/jobs", params={"cursor": cursor}), 422, "cursor")


def test_unknown_route_and_method(api):
    assert_problem(api.http.get("/nowhere"), 404)
    response = api.http.request("OPTIONS", "/jobs/abc")
    body = assert_problem(response, 405, "DELETE", "GET")
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"DELETE", "GET"}, body


def test_a_chunked_upload_is_cut_off_at_the_limit(api, redis_server):
    """No Content-Length: the limit applies to the bytes as they arrive."""
    limit = Settings().max_upload_bytes
    queued = waiting(redis_server.client())
    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()

    def chunks():
        yield head
        for _ in range(limit // 65536 + 8):  # past the limit, in 64 KiB chunks
            yield b"\0" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    response = api.http.post("/jobs", content=chunks(),
                             headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert_problem(response, 413, str(limit))
    assert waiting(redis_server.client()) == queued


def test_too_many_parts_are_refused(api):
    files = [("file", (f"{i}.png", b"x")) for i in range(2)]
    assert_problem(api.http.post("/jobs", files=files), 400, "files")
    many = [("files", (f"{i}.png", b"x")) for i in range(Settings().max_batch_files + 1)]
    assert_problem(api.http.post("/jobs/batch", files=many), 400, "files")


def test_a_huge_image_quotes_the_configured_pixel_limit(api):
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, format="PNG")  # over Pillow's own guard too
    assert_problem(api.submit(buffer.getvalue()), 413, f"{Settings().max_image_pixels}")


def test_batch_item_errors_have_the_same_shape(api):
    items = api.http.post("/jobs/batch", files=[("files", ("x", b"nope"))]).json()["items"]
    assert items[0]["error"]["status"] == 415
    assert items[0]["error"]["title"] == "Unsupported Media Type"


def test_a_stalled_body_gets_408(redis_server, logdir):
    """A client that declares a body and never sends it must not hold its connection."""
    api = start_api(redis_server.url, logdir, body_timeout_seconds=1)
    try:
        with socket.create_connection(("127.0.0.1", api.port), timeout=10) as connection:
            connection.sendall(b"POST /jobs HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n"
                               b"Content-Type: multipart/form-data; boundary=b\r\n"
                               + f"Authorization: Bearer {api.key}\r\n\r\n".encode())  # else 401 at once
            started = time.monotonic()
            reply = connection.recv(65536)
            seconds = time.monotonic() - started
            while b"stalled" not in reply and (chunk := connection.recv(65536)):
                reply += chunk  # the body may follow the head in a segment of its own
    finally:
        api.stop()
    assert reply.startswith(b"HTTP/1.1 408"), reply
    assert b"stalled" in reply
    assert seconds < 5


def test_a_full_redis_is_503_with_retry_after_and_records_nothing(private_stack, digit_png):
    server, api = private_stack
    client = server.client()
    job = api.submit(digit_png).json()
    rate = Keyspace().rate("")  # (rate state expires)
    keys = sorted(key for key in client.scan_iter() if not key.startswith(rate))
    client.config_set("maxmemory", 1)  # noeviction: every write is refused from now on
    try:
        for response in (api.submit(digit_png), api.http.post("/jobs/batch", files=[("files", ("a.png", digit_png))])):
            assert_problem(response, 503, "full")
            assert int(response.headers["retry-after"]) > 0
        assert sorted(key for key in client.scan_iter() if not key.startswith(rate)) == keys, "nothing written"
        assert api.http.get(f"/jobs/{job['id']}").status_code == 200, "reads still work"
        cancelled = api.http.delete(f"/jobs/{job['id']}")
        assert cancelled.status_code == 200, "a cancel frees memory: it goes through"
        assert cancelled.json()["status"] == "cancelled"
        assert not client.hexists(Keyspace().job(job["id"]), "input")
    finally:
        client.config_set("maxmemory", 0)
    assert api.submit(digit_png).status_code == 202


def test_a_burst_of_256_concurrent_submits_gets_no_503(private_stack, digit_png):
    """More requests in flight than Redis connections: they wait for one, none fails."""
    _, api = private_stack

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        async with httpx.AsyncClient(base_url=api.url, limits=limits, timeout=60, headers=api.http.headers) as client:
            responses = await asyncio.gather(*(client.post("/jobs", files={"file": ("7.png", digit_png)})
                                               for _ in range(256)))
        return [response.status_code for response in responses]

    statuses = asyncio.run(burst())
    assert statuses.count(202) == 256, {code: statuses.count(code) for code in set(statuses)}


def test_a_full_backlog_is_503_and_records_nothing(private_stack, logdir, digit_png):
    """MAX_QUEUED_JOBS bounds the queue (queued + in flight), like Triton's max_queue_size."""
    server, _ = private_stack  # no worker: what is submitted stays queued
    api = start_api(server.url, logdir, max_queued_jobs=3)
    try:
        assert [api.submit(digit_png).status_code for _ in range(3)] == [202, 202, 202]
        records = len(list(server.client().scan_iter(Keyspace().job("*"))))
        refused = api.submit(digit_png)
    finally:
        api.stop()
    assert_problem(refused, 503, "queue is full", "MAX_QUEUED_JOBS")
    assert int(refused.headers["retry-after"]) > 0
    assert len(list(server.client().scan_iter(Keyspace().job("*")))) == records
    assert waiting(server.client()) == 3

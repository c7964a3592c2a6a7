"""POST /jobs with the image as the body (api.raw), over real HTTP against a real API,
worker and Redis: the accepted types, the options in the query, the size limit, a bad
header's 4xx at submit, and an image whose header is good but whose pixels are not:
failed/invalid_image from the worker (DECODE_IN_WORKER_MAX_BYTES), or 422 at submit when
the API decodes. The client sends this way (no multipart)."""

import io
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from client import Client, JobStatus
from tests.utils.processes import new_key, start_api
from tests.utils.samples import heldout, heldout_png


@pytest.fixture
def http(api, redis_server) -> Iterator[httpx.Client]:
    key, _ = new_key(redis_server.url)
    with httpx.Client(base_url=api.url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        yield client


def _post(http: httpx.Client, body: bytes, content_type: str = "image/png", **params: str) -> httpx.Response:
    return http.post("/jobs", content=body, params=params, headers={"Content-Type": content_type})


def _wait(http: httpx.Client, job_id: str) -> dict:
    job: dict = http.get(f"/jobs/{job_id}", params={"wait": 30}).json()
    assert job["status"] in ("succeeded", "failed"), job
    return job


def _truncated_png() -> bytes:
    """A PNG whose header is whole and whose pixel data stops half way."""
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 60).save(buffer, "PNG")
    png = buffer.getvalue()
    return png[: len(png) // 2]


def _jpeg(png: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def test_accepted_types_and_options_in_the_query(http, worker):
    label = str(heldout()[1][0])
    png = heldout_png(0)
    for content_type, body in (("image/png", png), ("application/octet-stream", png), ("image/jpeg", _jpeg(png)),
                               ("IMAGE/PNG; charset=binary", png), ("image/jpeg", png)):  # the bytes decide
        response = _post(http, body, content_type, model="digits", priority="low")
        assert response.status_code == 202, (content_type, response.text)
        assert response.headers["Location"] == f"/jobs/{response.json()['id']}"
        assert "RateLimit-Remaining" in response.headers
        job = _wait(http, response.json()["id"])
        assert job["status"] == "succeeded", (content_type, job)
        assert job["result"]["label"] == label, (content_type, job)
        assert job["priority"] == "low", job
        assert job["model"]["name"] == "digits", job


def test_prefer_wait_and_idempotency_key(http, worker):
    png = heldout_png(2)
    headers = {"Content-Type": "image/png", "Prefer": "wait=20", "Idempotency-Key": "raw-once"}
    first = http.post("/jobs", content=png, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "succeeded", first.text
    again = http.post("/jobs", content=png, headers=headers)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]


def test_refusals_are_clear_4xx(http, api):
    png = heldout_png(0)
    unknown = _post(http, png, modle="digits")
    assert unknown.status_code == 422, unknown.text
    assert "modle" in unknown.text, unknown.text
    assert _post(http, png, model="nope").status_code == 404
    assert _post(http, png, priority="urgent").status_code == 422
    assert _post(http, png, expires_in="-1").status_code == 422
    empty = _post(http, b"")
    assert empty.status_code == 422
    assert "empty" in empty.json()["detail"]
    not_an_image = _post(http, b"hello, this is not an image" * 10)
    assert not_an_image.status_code == 415, not_an_image.text
    features_model = _post(http, png, model="iris")
    assert features_model.status_code == 415, features_model.text
    bomb = io.BytesIO()
    Image.new("L", (5000, 4000)).save(bomb, "PNG")  # 20 Mpx: over MAX_IMAGE_PIXELS, from the header
    assert _post(http, bomb.getvalue()).status_code == 413
    # No job was recorded by any of these.
    assert http.get("/jobs").json()["jobs"] == []


def test_size_limit_declared_and_chunked(redis_server, logdir):
    api = start_api(redis_server.url, logdir, max_upload_bytes=10_000)
    try:
        big = b"\x89PNG" + b"\0" * 200_000
        declared = api.http.post("/jobs", content=big, headers={"Content-Type": "image/png"})
        assert declared.status_code == 413, declared.text

        def chunks() -> Iterator[bytes]:
            for _ in range(30):
                yield b"\0" * 1000

        chunked = api.http.post("/jobs", content=chunks(), headers={"Content-Type": "image/png"})
        assert chunked.status_code == 413, chunked.text
    finally:
        api.stop()


def test_good_header_bad_pixels_fails_in_the_worker(http, worker):
    response = _post(http, _truncated_png())
    assert response.status_code == 202, response.text  # the header was good: the worker decodes
    job = _wait(http, response.json()["id"])
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "invalid_image", job
    # The worker goes on: the next job succeeds.
    ok = _post(http, heldout_png(3), **{"model": "digits"})
    assert _wait(http, ok.json()["id"])["status"] == "succeeded"


def test_good_header_bad_pixels_is_422_where_the_api_decodes(redis_server, logdir):
    api = start_api(redis_server.url, logdir, decode_in_worker_max_bytes=0)
    try:
        response = api.http.post("/jobs", content=_truncated_png(), headers={"Content-Type": "image/png"})
        assert response.status_code == 422, response.text
        assert "could not be decoded" in response.json()["detail"], response.text
    finally:
        api.stop()


class Recording(httpx.HTTPTransport):
    """The real transport, keeping each request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)


def test_the_client_sends_the_raw_body(api, worker):
    transport = Recording()
    with Client(api.url, api.key, transport=transport) as qi:
        job = qi.submit(heldout_png(4), model="digits", priority="low")
        assert qi.wait(job.id, timeout=30).status == JobStatus.succeeded
    post = next(r for r in transport.requests if r.method == "POST")
    assert post.headers["Content-Type"] == "application/octet-stream"
    assert post.content == heldout_png(4)
    assert post.url.params["model"] == "digits"
    assert post.url.params["priority"] == "low"

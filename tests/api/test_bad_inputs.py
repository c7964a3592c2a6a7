"""Inputs that once answered 500 get a clear 4xx and leave nothing behind, over real HTTP
against a real API and Redis (the hostile files are built by devstack.hostile)."""

import http.client
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from devstack.hostile import deep_json, png_with_garbage_exif, tiff_16bit_big_endian
from shared.jobstore import Keyspace
from tests.utils.processes import new_key
from tests.utils.samples import heldout_png


@pytest.fixture
def client(api, redis_server) -> Iterator[httpx.Client]:
    """A client of its own key: whatever it left queued is its key's jobs alone."""
    key, _ = new_key(redis_server.url)
    with httpx.Client(base_url=api.url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as http:
        yield http


def _problem(response: httpx.Response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    for word in words:
        assert word in body["detail"], body
    return body


def _backlog(api) -> int:
    return api.ops.get("/queue").json()["total"]


def _nothing_left(client: httpx.Client, api, backlog_before: int) -> None:
    """The key recorded no job, and the queue holds no more than before (a worker may drain it)."""
    assert client.get("/jobs").json()["jobs"] == []
    assert _backlog(api) <= backlog_before


@pytest.mark.parametrize("path", ["/jobs", "/predict"])
def test_deeply_nested_json_is_422(api, client, path):
    before = _backlog(api)
    response = client.post(path, content=deep_json(), headers={"content-type": "application/json"})
    _problem(response, 422, "nested too deeply")
    _nothing_left(client, api, before)


def test_deeply_nested_json_for_a_route_that_fastapi_parses_is_422(api, redis_server):
    """A body FastAPI parses itself (json.loads: a RecursionError, which it answered 400,
    undocumented) is refused as JSON that does not parse: 422."""
    admin, _ = new_key(redis_server.url, admin=True)  # the body is read before the admin check
    response = httpx.post(f"{api.url}/models/digits/default", content=deep_json(), timeout=30,
                          headers={"content-type": "application/json", "Authorization": f"Bearer {admin}"})
    _problem(response, 422, "nested too deeply")


def test_a_png_with_a_garbage_exif_chunk_is_422_where_the_api_decodes(api, client):
    before = _backlog(api)
    response = client.post("/predict", files={"file": ("exif.png", png_with_garbage_exif())})
    _problem(response, 422, "could not be decoded", "SyntaxError")
    _nothing_left(client, api, before)


def test_a_png_with_a_garbage_exif_chunk_fails_in_the_worker(api, worker, client):
    """POST /jobs leaves a small image's decoding to the worker (DECODE_IN_WORKER_MAX_BYTES):
    the job fails with invalid_image, the worker serves on."""
    response = client.post("/jobs", files={"file": ("exif.png", png_with_garbage_exif())})
    assert response.status_code == 202, response.text
    job = client.get(f"/jobs/{response.json()['id']}", params={"wait": 30}).json()
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "invalid_image", job
    assert "SyntaxError" in job["error"]["message"]
    fine = client.post("/jobs", files={"file": ("7.png", heldout_png(0))}, headers={"Prefer": "wait=30"})
    assert fine.json()["status"] == "succeeded", fine.text


@pytest.mark.parametrize("path", ["/jobs/batch", "/predict/batch"])
def test_a_batch_of_bad_files_only_queues_nothing(api, client, path):
    before = _backlog(api)
    files = [("files", ("exif.png", png_with_garbage_exif())), ("files", ("junk.png", b"not an image"))]
    response = client.post(path, files=files)
    if path == "/jobs/batch":
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["batch_id"] is None
        assert [(item["index"], item["status_code"]) for item in body["items"]] == [(0, 422), (1, 415)]
        assert "could not be decoded" in body["items"][0]["error"]["detail"]
    else:
        assert response.status_code == 200, response.text
        assert [p["status_code"] for p in response.json()["predictions"]] == [422, 415]
    _nothing_left(client, api, before)


def test_a_bad_file_in_a_batch_fails_its_item_and_the_batch_comes_back(api, client, digit_png):
    """Every file is checked before any is queued: the bad one (last, where a 500 once came
    after the others were queued, with no batch_id) fails in its item; the others are queued
    and the batch follows them."""
    files = [("files", ("a.png", digit_png)), ("files", ("b.png", digit_png)),
             ("files", ("exif.png", png_with_garbage_exif()))]
    response = client.post("/jobs/batch", files=files)
    assert response.status_code == 202, response.text
    body = response.json()
    assert [item["status_code"] for item in body["items"]] == [202, 202, 422]
    assert body["items"][2]["index"] == 2
    assert body["items"][2]["job"] is None
    batch = client.get(f"/batches/{body['batch_id']}").json()
    assert batch["total"] == 2
    assert {job["id"] for job in batch["jobs"]} == {item["job"]["id"] for item in body["items"][:2]}
    assert len(client.get("/jobs").json()["jobs"]) == 2


def test_a_kept_alive_connection_serves_on_after_a_refused_batch(api, client):
    """A refusal reads the whole body and answers on the same connection: the next request
    goes over the same socket (http.client would quietly open a new one if it had closed)."""
    url = urlsplit(api.url)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    boundary = "b0undary"
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"exif.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + png_with_garbage_exif() + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Authorization": client.headers["Authorization"],
               "Content-Type": f"multipart/form-data; boundary={boundary}"}
    try:
        connection.request("POST", "/jobs/batch", body=part, headers=headers)
        first = connection.getresponse()
        assert first.status == 422
        assert json.loads(first.read())["batch_id"] is None
        assert first.getheader("connection") != "close"
        sock = connection.sock
        connection.request("GET", "/healthz")
        second = connection.getresponse()
        assert second.status == 200
        assert json.loads(second.read()) == {"status": "ok"}
        assert connection.sock is sock
    finally:
        connection.close()


def test_odd_batch_ids_are_404_never_500(api, client, redis_server, digit_png):
    """`<id>:hook` named a batch's webhook hash, which the batch read as a string (WRONGTYPE).
    Ids are checked against what the API makes before any key is built from them."""
    body = client.post("/jobs/batch", files=[("files", ("a.png", digit_png))]).json()
    batch_id = body["batch_id"]
    # The hook of a batch with a batch_webhook_url (a hash): what `<id>:hook` once reached.
    redis_server.client().hset(Keyspace().batch_hook(batch_id), "url", "https://example.com/hook")
    assert client.get(f"/batches/{batch_id}").status_code == 200
    for odd in (f"{batch_id}:hook", "x:hook", batch_id.upper(), batch_id[:-1], "a" * 300, "%00"):
        response = client.get(f"/batches/{odd}")
        assert response.status_code == 404, (odd, response.text)
        assert "unknown, or expired" in response.json()["detail"]


def test_a_16_bit_big_endian_tiff_is_read_and_runs(api, worker, client):
    """Not a bad image at all: 16-bit TIFFs of either byte order are read (the high byte)."""
    response = client.post("/jobs", files={"file": ("grey.tif", tiff_16bit_big_endian())})
    assert response.status_code == 202, response.text
    job = response.json()
    for _ in range(12):  # long polls of 10 s: up to two minutes for the worker to start
        job = client.get(f"/jobs/{job['id']}", params={"wait": 10}).json()
        if job["status"] not in ("queued", "running"):
            break
    assert job["status"] == "succeeded", job

"""Noisy neighbour, bad input (issue #19): key A sends only what once answered 500 (deep
JSON, a garbage eXIf PNG, a batch of bad files, odd batch ids) while key B submits digits at
a steady rate. A gets a 4xx for each, except the PNG sent alone to POST /jobs: its header is
good, so it is queued and the worker, which decodes it, fails it with invalid_image
(DECODE_IN_WORKER_MAX_BYTES). A leaves nothing queued; every one of B's jobs succeeds; no
process falls over. Real API, Redis and worker."""

import threading
import time
from collections import Counter

import httpx

from devstack.hostile import deep_json, png_with_garbage_exif
from tests.utils.processes import new_key
from tests.utils.samples import heldout_png

ABUSES = 40  # rounds of A's four requests
B_JOBS = 20
B_EVERY_SECONDS = 0.1


def _client(api, redis_url: str) -> httpx.Client:
    key, _ = new_key(redis_url)
    return httpx.Client(base_url=api.url, timeout=60, headers={"Authorization": f"Bearer {key}"})


def _abuse(client: httpx.Client, statuses: Counter, stop: threading.Event, queued: list[str]) -> None:
    exif = png_with_garbage_exif()
    deep = deep_json()
    for _ in range(ABUSES):
        if stop.is_set():
            return
        for response in (
            client.post("/jobs", content=deep, headers={"content-type": "application/json"}),
            client.post("/jobs", files={"file": ("exif.png", exif)}),
            client.post("/jobs/batch", files=[("files", ("a.png", exif)), ("files", ("b.png", exif))]),
            client.get("/batches/0123456789abcdef0123456789abcdef:hook"),
        ):
            statuses[response.status_code] += 1
            if response.status_code == 202:
                queued.append(response.json()["id"])


def test_bad_input_from_one_key_costs_the_other_nothing(api, worker, redis_server):
    a, b = _client(api, redis_server.url), _client(api, redis_server.url)
    statuses: Counter = Counter()
    stop = threading.Event()
    queued: list[str] = []
    abuser = threading.Thread(target=_abuse, args=(a, statuses, stop, queued))
    try:
        abuser.start()
        ids = []
        for index in range(B_JOBS):
            response = b.post("/jobs", files={"file": ("digit.png", heldout_png(index))})
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
            time.sleep(B_EVERY_SECONDS)
        abuser.join(timeout=300)
        assert not abuser.is_alive(), "A's requests all got an answer"
        for job_id in ids:  # generous: a long poll of up to 60 s each
            job = b.get(f"/jobs/{job_id}", params={"wait": 60}).json()
            assert job["status"] == "succeeded", job
        assert sum(statuses.values()) == 4 * ABUSES
        assert set(statuses) <= {202, 404, 422}, statuses  # a clear 4xx (or a job that fails), never a 5xx
        assert statuses[202] <= ABUSES, statuses  # only the lone PNG's
        for job_id in queued:
            job = a.get(f"/jobs/{job_id}", params={"wait": 60}).json()
            assert job["status"] == "failed", job
            assert job["error"]["code"] == "invalid_image", job
        assert all(job["status"] == "failed" for job in a.get("/jobs").json()["jobs"]), "A left nothing queued"
        assert worker.proc.poll() is None
        assert b.get("/healthz").status_code == 200
    finally:
        stop.set()
        abuser.join(timeout=60)
        a.close()
        b.close()

"""GET /jobs/{id}?wait=S and Prefer: wait=S on POST: answered on completion, event-driven."""

import os
import signal
import threading
import time

from shared.jobstore import JobStore
from shared.schemas import ErrorCode, JobError
from tests.utils.jobs import make_job


def test_post_with_prefer_wait_returns_the_finished_job(api, worker, digit_png):
    response = api.http.post("/jobs", files={"file": ("7.png", digit_png)}, headers={"Prefer": "wait=20"})
    assert response.status_code == 200
    assert response.headers["preference-applied"] == "wait=20"
    assert response.json()["status"] == "succeeded"
    assert response.json()["result"]["label"] == "7"


def test_get_with_wait_returns_promptly_when_the_job_finishes(api, store):
    """No worker touches this job: the test finishes it itself, and the waiting GET must
    answer within a few ms of that, far before its 20 s wait runs out."""
    job = make_job(store, owner=api.key_id)
    finished_at = {}

    def finish_later():
        time.sleep(0.5)
        store.start([job.id], "test")
        # Taken before the finish: the woken GET may answer before this thread runs again.
        finished_at["t"] = time.monotonic()
        store.finish({job.id: JobError(code=ErrorCode.inference_error, message="done by test")}, "test")

    finisher = threading.Thread(target=finish_later)
    finisher.start()
    started = time.monotonic()
    response = api.http.get(f"/jobs/{job.id}", params={"wait": 20})
    answered = time.monotonic()
    finisher.join()
    assert response.json()["status"] == "failed"
    assert answered - started < 5
    # Typically a few ms; the margin is for a loaded CI machine, not for a polling loop.
    assert answered - finished_at["t"] < 0.3, "the long-poll must be woken by the finish, not a sleep loop"


def test_wait_times_out_with_the_job_as_it_is(api, store):
    job = make_job(store, owner=api.key_id)
    started = time.monotonic()
    response = api.http.get(f"/jobs/{job.id}", params={"wait": 0.5})
    assert 0.45 < time.monotonic() - started < 3
    assert response.status_code == 200
    assert response.json()["status"] == "queued"


def test_wait_bounds(api):
    assert api.http.get("/jobs/nope", params={"wait": 61}).status_code == 422
    started = time.monotonic()
    assert api.http.get("/jobs/nope", params={"wait": 30}).status_code == 404
    assert time.monotonic() - started < 2, "an unknown job is 404 at once, not after the wait"


def test_a_long_poll_answers_503_soon_after_redis_freezes(private_stack, redis_server):
    """A frozen Redis (SIGSTOP) closes no connection: the API must notice by itself."""
    server, api = private_stack
    job = make_job(JobStore.connect(server.url, ttl_seconds=600, timeout=2), owner=api.key_id)
    answer = {}

    def long_poll():
        started = time.monotonic()
        answer["response"] = api.http.get(f"/jobs/{job.id}", params={"wait": 30})
        answer["seconds"] = time.monotonic() - started

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(1)  # the long-poll is waiting now
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        poller.join(20)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    assert "response" in answer, "no answer within 20 s of Redis freezing (the wait was 30 s)"
    assert answer["response"].status_code == 503
    assert "Retry-After" in answer["response"].headers
    # Frozen at ~1 s; noticed within about REDIS_TIMEOUT_SECONDS (2 s); margin for a loaded CI.
    assert answer["seconds"] < 8, answer

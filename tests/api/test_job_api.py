"""Cancel, idempotency, batch submit, result cache, deadlines, listing: real API, worker, Redis."""

import threading
import time

from devstack.processes import Worker, wait_for
from tests.utils.events import EventCapture
from tests.utils.jobs import make_job
from tests.utils.processes import start_api
from tests.utils.samples import heldout_png


def test_cancel_a_queued_job(api, store):
    job = make_job(store, owner=api.key_id)  # queued, no worker will take it
    response = api.http.delete(f"/jobs/{job.id}")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at"] is not None
    again = api.http.post(f"/jobs/{job.id}/cancel")
    assert again.status_code == 409
    assert "cancelled" in again.json()["detail"]
    assert api.http.delete("/jobs/0000").status_code == 404


def test_cancel_a_finished_job_is_409(api, worker):
    job = api.http.post("/jobs", files={"file": ("a.png", heldout_png())}, headers={"Prefer": "wait=20"}).json()
    assert job["status"] == "succeeded"
    response = api.http.delete(f"/jobs/{job['id']}")
    assert response.status_code == 409
    assert "succeeded" in response.json()["detail"]


def test_cancel_race_never_yields_a_job_both_cancelled_and_run(api, worker):
    ids = [api.submit(heldout_png(i % 10)).json()["id"] for i in range(40)]
    outcomes = {}

    def cancel(job_id):
        outcomes[job_id] = api.http.delete(f"/jobs/{job_id}").status_code

    threads = [threading.Thread(target=cancel, args=(j,)) for j in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    jobs = [api.wait_terminal(j) for j in ids]
    for job in jobs:
        if outcomes[job["id"]] == 200:
            assert job["status"] == "cancelled"
            assert job["started_at"] is None, "a cancelled job must never run"
            assert job["result"] is None, "a cancelled job must never run"
        else:
            assert outcomes[job["id"]] == 409
            assert job["status"] == "succeeded"
            assert job["started_at"] is not None


def test_idempotency_key_returns_the_same_job(api, worker):
    image = heldout_png()
    headers = {"Idempotency-Key": "order-42-" + str(threading.get_ident())}
    first = api.http.post("/jobs", files={"file": ("a.png", image)}, headers=headers)
    # The client never saw that answer (dropped connection) and retries the same request.
    second = api.http.post("/jobs", files={"file": ("a.png", image)}, headers=headers)
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    different = api.http.post("/jobs", files={"file": ("b.png", heldout_png(3))}, headers=headers)
    assert different.status_code == 422
    assert "Idempotency-Key" in different.json()["detail"]


def test_batch_submit_reports_each_file(api, worker):
    files = [("files", ("a.png", heldout_png(0))), ("files", ("junk.txt", b"not an image")),
             ("files", ("c.png", heldout_png(5)))]
    response = api.http.post("/jobs/batch", files=files)
    assert response.status_code == 202
    items = response.json()["items"]
    assert [i["index"] for i in items] == [0, 1, 2]
    assert items[1]["status_code"] == 415
    assert items[1]["job"] is None
    assert "PNG" in items[1]["error"]["detail"]
    assert items[0]["job"]
    assert items[2]["job"]
    assert api.wait_terminal(items[2]["job"]["id"])["status"] == "succeeded"

    nothing = api.http.post("/jobs/batch", files=[("files", ("x", b"nope"))])
    assert nothing.status_code == 422


def test_identical_bytes_are_answered_from_the_cache(redis_server, logdir, worker):
    api = start_api(redis_server.url, logdir, result_cache_ttl_seconds=3600)  # the others run without
    events = EventCapture(redis_server.url)
    try:
        image = heldout_png(7)
        first = api.http.post("/jobs", files={"file": ("a.png", image)}, headers={"Prefer": "wait=20"}).json()
        again = api.http.post("/jobs", files={"file": ("a.png", image)})
        # Flower sees the cached job end too, though no worker ran it.
        wait_for(lambda: "task-succeeded" in events.kinds(again.json()["id"]), 10, "the cached job's events")
    finally:
        api.stop()
    assert first["status"] == "succeeded"
    assert first["cached"] is False
    assert again.status_code == 200
    body = again.json()
    assert body["cached"] is True
    assert body["status"] == "succeeded"
    assert body["id"] != first["id"]
    assert body["result"] == first["result"]


def test_deadline_passes_while_queued_job_fails_expired(private_stack, logdir, digit_png):
    """No worker runs until the deadline has passed; then the job must not run."""
    server, api = private_stack
    job = api.submit(digit_png, expires_in="0.5").json()
    assert job["expires_at"] is not None
    time.sleep(1)
    worker = Worker(server.url, logdir)
    try:
        done = api.wait_terminal(job["id"])
    finally:
        worker.stop()
    assert done["status"] == "failed"
    assert done["error"]["code"] == "expired"
    assert done["started_at"] is None
    assert done["result"] is None


def test_listing_filters_and_pages(api, worker):
    ids = [api.http.post("/jobs", files={"file": ("a.png", heldout_png(1))}, headers={"Prefer": "wait=20"}).json()["id"]
           for _ in range(3)]
    page = api.http.get("/jobs", params={"limit": 2, "status": "succeeded"}).json()
    assert len(page["jobs"]) == 2
    assert all(j["status"] == "succeeded" for j in page["jobs"])
    assert [j["id"] for j in page["jobs"]] == ids[::-1][:2], "newest first"
    following = api.http.get("/jobs", params={"limit": 1, "status": "succeeded", "cursor": page["next_cursor"]}).json()
    assert following["jobs"][0]["id"] == ids[0]
    assert api.http.get("/jobs", params={"status": "bogus"}).status_code == 422
    assert api.http.get("/jobs", params={"limit": 1000}).status_code == 422

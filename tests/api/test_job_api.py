"""Cancel, idempotency, batch submit, result cache, deadlines, listing: real API, worker, Redis."""

import threading


def test_cancel_a_queued_job(api, store):
    from shared.registry import Registry
    from shared.settings import Settings

    job = store.create(Registry(Settings().model_dir, "digits").resolve(None))  # queued, no worker will take it
    response = api.http.delete(f"/jobs/{job.id}")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert response.json()["finished_at"] is not None
    again = api.http.post(f"/jobs/{job.id}/cancel")
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]
    assert api.http.delete("/jobs/0000").status_code == 404


def test_cancel_a_finished_job_is_409(api, worker, unique_png):
    job = api.http.post("/jobs", files={"file": ("a.png", unique_png())}, headers={"Prefer": "wait=20"}).json()
    assert job["status"] == "succeeded"
    response = api.http.delete(f"/jobs/{job['id']}")
    assert response.status_code == 409 and "succeeded" in response.json()["detail"]


def test_cancel_race_never_yields_a_job_both_cancelled_and_run(api, worker, unique_png):
    ids = [api.submit(unique_png(i % 10)).json()["id"] for i in range(40)]
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
            assert job["started_at"] is None and job["result"] is None, "a cancelled job must never run"
        else:
            assert outcomes[job["id"]] == 409
            assert job["status"] == "succeeded" and job["started_at"] is not None


def test_idempotency_key_returns_the_same_job(api, worker, unique_png):
    image = unique_png()
    headers = {"Idempotency-Key": "order-42-" + str(threading.get_ident())}
    first = api.http.post("/jobs", files={"file": ("a.png", image)}, headers=headers)
    # The client never saw that answer (dropped connection) and retries the same request.
    second = api.http.post("/jobs", files={"file": ("a.png", image)}, headers=headers)
    assert first.status_code == 202 and second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    different = api.http.post("/jobs", files={"file": ("b.png", unique_png(3))}, headers=headers)
    assert different.status_code == 422 and "Idempotency-Key" in different.json()["detail"]


def test_batch_submit_reports_each_file(api, worker, unique_png):
    files = [("files", ("a.png", unique_png(0))), ("files", ("junk.txt", b"not an image")),
             ("files", ("c.png", unique_png(5)))]
    response = api.http.post("/jobs/batch", files=files)
    assert response.status_code == 202
    items = response.json()["items"]
    assert [i["index"] for i in items] == [0, 1, 2]
    assert items[1]["status_code"] == 415 and items[1]["job"] is None and "PNG" in items[1]["error"]["detail"]
    assert items[0]["job"] and items[2]["job"]
    assert api.wait_terminal(items[2]["job"]["id"])["status"] == "succeeded"

    nothing = api.http.post("/jobs/batch", files=[("files", ("x", b"nope"))])
    assert nothing.status_code == 422


def test_identical_bytes_are_answered_from_the_cache(api, worker, unique_png, heldout):
    image = unique_png(7)
    first = api.http.post("/jobs", files={"file": ("a.png", image)}, headers={"Prefer": "wait=20"}).json()
    assert first["status"] == "succeeded" and first["cached"] is False
    again = api.http.post("/jobs", files={"file": ("a.png", image)})
    assert again.status_code == 200
    body = again.json()
    assert body["cached"] is True and body["status"] == "succeeded" and body["id"] != first["id"]
    assert body["result"] == first["result"]


def test_deadline_passes_while_queued_job_fails_expired(private_stack, logdir, digit_png):
    """No worker runs until the deadline has passed; then the job must not run."""
    import time

    from tests.stack import Worker

    server, api = private_stack
    job = api.submit(digit_png, expires_in="0.5").json()
    assert job["expires_at"] is not None
    time.sleep(1)
    worker = Worker(server.url, logdir)
    try:
        done = api.wait_terminal(job["id"])
    finally:
        worker.stop()
    assert done["status"] == "failed" and done["error"]["code"] == "expired"
    assert done["started_at"] is None and done["result"] is None


def test_listing_filters_and_pages(api, worker, unique_png, store):
    ids = [api.http.post("/jobs", files={"file": ("a.png", unique_png(1))}, headers={"Prefer": "wait=20"}).json()["id"]
           for _ in range(3)]
    page = api.http.get("/jobs", params={"limit": 2, "status": "succeeded"}).json()
    assert len(page["jobs"]) == 2 and all(j["status"] == "succeeded" for j in page["jobs"])
    assert [j["id"] for j in page["jobs"]] == ids[::-1][:2], "newest first"
    following = api.http.get("/jobs", params={"limit": 1, "status": "succeeded", "cursor": page["next_cursor"]}).json()
    assert following["jobs"][0]["id"] == ids[0]
    assert api.http.get("/jobs", params={"status": "bogus"}).status_code == 422
    assert api.http.get("/jobs", params={"limit": 1000}).status_code == 422

"""Dynamic batching with real Redis and worker: batches form, prefetch stays bounded,
Flower sees every job, and the worker survives a Redis restart under load."""

import threading
import time

import httpx

from devstack.processes import Worker, sample, wait_for
from shared.codec import encode_pixels
from shared.jobstore import JobStore
from shared.preprocessing import pixels_of
from shared.settings import Settings
from tests.utils.events import EventCapture
from tests.utils.jobs import make_job, task_message, waiting
from tests.utils.samples import DIGITS, heldout_png


def submit_all(api, images) -> list[str]:
    """Submit, retrying on 503 (Redis briefly away) as a well-behaved client does."""
    ids = []
    for image in images:
        response = wait_for(lambda image=image: (r := api.submit(image)).status_code == 202 and r, 60, "a 202")
        ids.append(response.json()["id"])
    return ids


def test_batches_form_and_fill_up_to_the_maximum(private_stack, logdir):
    server, api = private_stack
    worker = Worker(server.url, logdir, max_batch_size=8, max_delay_ms=400)
    try:
        files = [("files", (f"{i}.png", heldout_png(i))) for i in range(20)]
        items = api.http.post("/jobs/batch", files=files).json()["items"]
        jobs = [api.wait_terminal(item["job"]["id"]) for item in items]
        metrics = httpx.get(worker.metrics_url).text
    finally:
        worker.stop()
    assert all(job["status"] == "succeeded" for job in jobs)
    # Jobs started by one batch share its start time: 20 jobs, at most 8 per batch.
    batches = {}
    for job in jobs:
        batches.setdefault(job["started_at"], []).append(job["id"])
    sizes = sorted(len(b) for b in batches.values())
    assert max(sizes) == 8, sizes
    assert len(batches) <= 4, sizes
    assert 'inference_batch_size_bucket{le="8.0"}' in metrics


def test_full_batches_form_under_a_backlog(private_stack, logdir, digit_png):
    """256 jobs queued before the worker starts (8 x MAX_BATCH_SIZE): it takes messages in
    bursts while the model runs, so batches are full, not the ones and twos that one
    message per round trip gave (mean 1.0 before shared/broker/patch.py and worker/inference/batcher.py)."""
    server, _ = private_stack
    store = JobStore.connect(server.url, ttl_seconds=600, timeout=2)
    payload = encode_pixels(pixels_of(digit_png, DIGITS, 10**7))
    jobs = [make_job(store, queue=Settings().queue_name, payload=payload) for _ in range(256)]
    worker = Worker(server.url, logdir, max_batch_size=32, max_delay_ms=2)
    try:
        wait_for(lambda: all(store.get(job.id).status == "succeeded" for job in jobs), 60, "the backlog")
        metrics = httpx.get(worker.metrics_url).text
    finally:
        worker.stop()
    batches = sample(metrics, "inference_batch_size_count")
    mean = sample(metrics, "inference_batch_size_sum") / batches
    assert mean >= 0.5 * 32, f"mean batch {mean:.1f} over {batches:.0f} batches"


def test_prefetch_is_bounded_and_the_backlog_stays_in_redis(private_stack, logdir, digit_png):
    server, _ = private_stack
    client = server.client()
    payload = encode_pixels(pixels_of(digit_png, DIGITS, 10**7))
    # 300 queued jobs before the worker starts.
    store = JobStore.connect(server.url, ttl_seconds=600, timeout=2)
    for _ in range(300):
        make_job(store, queue=Settings().queue_name, payload=payload)

    worker = Worker(server.url, logdir, max_batch_size=4, prefetch_batches=2, max_delay_ms=50)
    in_flight, queued = [], []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            in_flight.append(client.hlen("unacked"))
            queued.append(waiting(client))
            if queued[-1] == 0 and in_flight[-1] == 0:
                break
            time.sleep(0.002)
    finally:
        worker.stop()
    assert max(in_flight) <= 4 * 2, f"the worker held {max(in_flight)} messages; prefetch is 8"
    assert max(in_flight) >= 4, "batches should fill while a backlog waits"
    assert sorted(queued)[len(queued) // 2] > 0, "the backlog must stay visible in the queue"
    assert queued[-1] == 0, "everything drains"
    assert in_flight[-1] == 0, "everything drains"


def test_every_job_sends_flower_events(api, worker, redis_server):
    events = EventCapture(redis_server.url)
    ids = [api.submit(heldout_png(i)).json()["id"] for i in range(5)]
    for job_id in ids:
        api.wait_terminal(job_id)
    wait_for(lambda: {e["uuid"] for e in events.seen if e["type"] == "task-succeeded"} >= set(ids), 15, "events")
    for job_id in ids:
        kinds = events.kinds(job_id)
        assert {"task-received", "task-started", "task-succeeded"} <= set(kinds), kinds
        received = next(e for e in events.of(job_id) if e["type"] == "task-received")
        assert received["name"] == "worker.infer"
        succeeded = next(e for e in events.of(job_id) if e["type"] == "task-succeeded")
        assert succeeded["runtime"] > 0


def test_expired_and_cancelled_jobs_end_in_flower_too(api, worker, redis_server, store):
    """A job the worker does not run still gets a terminal event, or Flower shows it
    STARTED forever (with a Terminate button)."""
    queue = Settings().queue_name
    events = EventCapture(redis_server.url)
    expired, cancelled = make_job(store, expires_in=0.001), make_job(store, owner=api.key_id)
    assert api.http.delete(f"/jobs/{cancelled.id}").status_code == 200
    time.sleep(0.05)  # past the first one's deadline
    # Their messages were still on the way.
    store.push(queue, [task_message(expired.id, queue).message, task_message(cancelled.id, queue).message])
    wait_for(lambda: "task-failed" in events.kinds(expired.id) and "task-revoked" in events.kinds(cancelled.id),
             15, "terminal events")
    failed = next(e for e in events.of(expired.id) if e["type"] == "task-failed")
    assert failed["exception"] == "expired"


def test_worker_recovers_from_redis_restarts_under_load(private_stack, logdir):
    """After a reconnect the strategy is rebuilt and must go on handing bursts over (what
    celery-batches 0.11 stopped doing, upstream #99): jobs after the restart, fewer than a
    batch, would wait forever."""
    server, api = private_stack
    # Redelivery must not be what rescues a stuck buffer: nothing is redelivered within the
    # 10 s the last jobs get. A message caught mid-delivery by a restart is redelivered after 30 s.
    worker = Worker(server.url, logdir, max_batch_size=32, max_delay_ms=20, visibility_timeout_seconds=30)
    submitted: list[str] = []
    stop = threading.Event()

    def load():
        i = 0
        while not stop.is_set():
            submitted.extend(submit_all(api, [heldout_png(i % 300)]))
            i += 1

    thread = threading.Thread(target=load)
    try:
        thread.start()
        for _ in range(2):  # restarts
            time.sleep(1.5)
            server.stop()
            time.sleep(1)
            server.start()
        time.sleep(1.5)
        stop.set()
        thread.join(60)
        # A handful more, fewer than a batch: only the flush timer can run them.
        last = submit_all(api, [heldout_png(i) for i in range(3)])
        assert all(api.wait_terminal(job_id, timeout=10)["status"] == "succeeded" for job_id in last)
        jobs = [api.wait_terminal(job_id, timeout=60) for job_id in submitted]
    finally:
        stop.set()
        worker.stop()
    assert len(submitted) > 20
    assert all(job["status"] == "succeeded" for job in jobs), [j["status"] for j in jobs if j["status"] != "succeeded"]

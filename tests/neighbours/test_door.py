"""Noisy neighbour at the door (issue #19, 1 and 6): while uploads with no key pour 60 MB
bodies at the API and key A reads past its read rate, key B submits a job every 0.25 s and
waits for each. Every one of B's jobs succeeds, B is never refused, and the API spools
nothing and stays about its size. Real Redis, worker and API."""

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from benchmarks.bombs import rss_mb
from tests.utils.processes import new_key, start_api
from tests.utils.raw_http import PART_HEAD, closed_by_peer, connect, read_answer, spooled, upload_head
from tests.utils.samples import heldout_png

MB = 1024 * 1024
SECONDS = 6.0
B_JOBS = 24  # one every 0.25 s


def _keyless_uploads(port: int, stop: threading.Event, seen: Counter) -> None:
    """60 MB uploads with no key, one after another, each sent until the API shuts it."""
    while not stop.is_set():
        try:
            with connect(port) as connection:
                connection.sendall(upload_head("/jobs/batch", 60 * MB) + PART_HEAD)
                seen[read_answer(connection).status] += 1
                seen["closed"] += closed_by_peer(connection, 60 * MB)
        except OSError as exc:  # the close can overtake the answer: counted, not an error here
            seen[type(exc).__name__] += 1
        stop.wait(0.05)


def _a_reads(url: str, key: str, stop: threading.Event, seen: Counter) -> None:
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        while not stop.is_set():
            seen[client.get("/jobs", params={"status": "succeeded", "limit": 100}).status_code] += 1
            stop.wait(0.01)


def test_keyless_uploads_and_a_readers_flood_leave_b_alone(redis_server, worker, logdir, tmp_path):
    api = start_api(redis_server.url, logdir, tmpdir=tmp_path)
    a_key, _ = new_key(redis_server.url, read_rate_limit=60)
    b_key, _ = new_key(redis_server.url)  # the defaults' read rate: B is not held to A's
    keyless: Counter = Counter()
    a_reads: Counter = Counter()
    stop = threading.Event()
    try:
        rss_before = rss_mb(api.proc.pid)
        with ThreadPoolExecutor(6) as pool:
            flood = [pool.submit(_keyless_uploads, api.port, stop, keyless) for _ in range(4)]
            flood.append(pool.submit(_a_reads, api.url, a_key, stop, a_reads))
            b_answers: Counter = Counter()
            b_jobs = []
            with httpx.Client(base_url=api.url, timeout=60, headers={"Authorization": f"Bearer {b_key}"}) as b:
                started = time.monotonic()
                for i in range(B_JOBS):
                    time.sleep(max(0.0, started + i * SECONDS / B_JOBS - time.monotonic()))
                    submitted = b.post("/jobs", files={"file": ("d.png", heldout_png(i % 10))})
                    b_answers[submitted.status_code] += 1
                    if submitted.status_code == 202:
                        b_jobs.append(submitted.json()["id"])
                    assert spooled(api.proc.pid, tmp_path) == 0, "nothing of the keyless bodies spooled"
                stop.set()
                for future in flood:
                    future.result()
                finished = [b.get(f"/jobs/{job_id}", params={"wait": 30}).json() for job_id in b_jobs]
        rss_after = rss_mb(api.proc.pid)
    finally:
        stop.set()
        api.stop()
    assert b_answers == {202: B_JOBS}, b_answers
    assert Counter(job["status"] for job in finished) == {"succeeded": B_JOBS}, "nothing lost"
    assert keyless[401] >= 4, keyless  # the flood was real: each of its uploads refused
    assert set(keyless) <= {401, "closed", "ConnectionResetError", "BrokenPipeError"}, keyless
    assert a_reads[429] > 0, a_reads
    assert set(a_reads) <= {200, 429}, a_reads
    assert rss_after - rss_before < 100, (rss_before, rss_after)  # MB; the bodies were never held

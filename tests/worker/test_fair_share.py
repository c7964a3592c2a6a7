"""Fair share between keys against a real API, Redis and worker (shared/broker/fair.py): a
key's single job runs among the first batches behind another key's flood, whatever lane
each uses; the queue's in-flight count is its own."""

import time

import httpx

from devstack.processes import Flower, Worker, wait_for
from shared.schemas import Priority
from tests.utils.processes import new_key, start_api
from tests.utils.samples import heldout_png

FLOOD = 256  # 8 batches of MAX_BATCH_SIZE (32)
BATCH = 32


def submit(api, key: str, count: int, **form) -> list[str]:
    """`count` jobs of one key, in batches of 64 files; their ids in submission order."""
    ids: list[str] = []
    while len(ids) < count:
        files = [("files", (f"{i}.png", heldout_png(i % 10))) for i in range(min(64, count - len(ids)))]
        answer = api.http.post("/jobs/batch", files=files, data=form, headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 202, answer.text
        ids += [item["job"]["id"] for item in answer.json()["items"]]
    return ids


def finished(api, key: str, ids: list[str]) -> dict[str, str]:
    """Each job's server-side finish time, once all succeeded."""
    def job(job_id: str) -> dict:
        answer = api.http.get(f"/jobs/{job_id}", params={"wait": 30}, headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200, answer.text
        return answer.json()

    jobs = [wait_for(lambda job_id=job_id: (j := job(job_id))["status"] in ("succeeded", "failed") and j, 120,
                     f"job {job_id}") for job_id in ids]
    assert {job["status"] for job in jobs} == {"succeeded"}
    return {job["id"]: job["finished_at"] for job in jobs}


def ahead(flood: dict[str, str], when: str) -> int:
    """How many of the flood's jobs finished before `when`."""
    return sum(1 for at in flood.values() if at < when)


def queue_then_drain(api, server, logdir, flood: int, flood_lane: str, count: int, lane: str
                     ) -> tuple[dict[str, str], dict[str, str]]:
    """With no worker yet (a paused service), key A queues `flood` jobs in `flood_lane`, then
    key B `count` in `lane` (both keys may use any lane); then a worker drains the queue.
    Each job's finish time: A's, B's."""
    flooder, _ = new_key(server.url, max_priority=Priority.high)
    flood_ids = submit(api, flooder, flood, priority=flood_lane)
    other, _ = new_key(server.url, max_priority=Priority.high)
    other_ids = submit(api, other, count, priority=lane)
    worker = Worker(server.url, logdir)
    try:
        return finished(api, flooder, flood_ids), finished(api, other, other_ids)
    finally:
        worker.stop()


def test_one_keys_job_runs_among_the_first_batches_behind_another_keys_flood(private_stack, logdir):
    server, api = private_stack
    flood, single = queue_then_drain(api, server, logdir, FLOOD, "normal", 1, "normal")
    when, = single.values()
    # FIFO would finish all 256 first; round robin takes the single job second.
    assert ahead(flood, when) < BATCH, f"{ahead(flood, when)} of the flood finished first"


def test_with_fair_share_off_the_queue_is_first_come_first_served(private_stack, logdir):
    server, _ = private_stack
    api = start_api(server.url, logdir, fair_share=False)
    try:  # the single job is high: accepted, and waits its turn
        flood, single = queue_then_drain(api, server, logdir, 96, "normal", 1, "high")
    finally:
        api.stop()
    when, = single.values()
    assert ahead(flood, when) == 96


def test_a_high_priority_job_overtakes_a_normal_backlog(private_stack, logdir):
    server, api = private_stack
    flood, urgent = queue_then_drain(api, server, logdir, FLOOD, "normal", 1, "high")
    when, = urgent.values()
    assert ahead(flood, when) < BATCH, f"{ahead(flood, when)} of the normal backlog finished first"


def test_a_low_lane_still_progresses_under_a_high_flood(private_stack, logdir):
    """Of every 16 picks, one goes to a lower lane with jobs waiting (README: Fair share and
    priority lanes): the low jobs finish long before the high flood does."""
    server, api = private_stack
    flood, done = queue_then_drain(api, server, logdir, FLOOD, "high", 4, "low")
    last = max(done.values())
    assert ahead(flood, last) <= 4 * 16 + BATCH, f"{ahead(flood, last)} of the high flood finished first"
    assert ahead(flood, last) < FLOOD / 2


def test_cancel_after_expires_a_job_not_started_in_time(private_stack, logdir, digit_png):
    server, api = private_stack
    late = api.http.post("/jobs", files={"file": ("a.png", digit_png)}, headers={"Cancel-After": "1s"}).json()
    on_time = api.http.post("/jobs", files={"file": ("b.png", digit_png)}, headers={"Cancel-After": "5m"}).json()
    time.sleep(1.5)  # past the first one's deadline, with no worker to start it
    worker = Worker(server.url, logdir)
    try:
        expired = api.wait_terminal(late["id"])
        ran = api.wait_terminal(on_time["id"])
    finally:
        worker.stop()
    assert expired["status"] == "failed"
    assert expired["error"]["code"] == "expired"
    assert expired["started_at"] is None, "no model time spent"
    assert ran["status"] == "succeeded"


def test_the_in_flight_count_is_the_queues_own_and_flowers_inspects_leave_nothing(private_stack, logdir):
    """kombu's `unacked` hash is every queue's; Flower's inspect replies (consumed without
    acknowledgement) were recorded there and never deleted, so an idle stack said "4 in
    flight", more after each restart."""
    server, api = private_stack
    worker = Worker(server.url, logdir)
    flower = Flower(server.url, logdir)
    try:
        for _ in range(3):
            assert flower.http.get("/api/workers", params={"refresh": 1}).status_code == 200
        job, = submit(api, api.key, 1)
        finished(api, api.key, [job])
        wait_for(lambda: api.ops.get("/queue").json()["in_flight"] == 0, 10, "in flight 0")
        assert api.ops.get("/queue").json()["queued"] == 0
        assert server.client().hlen("unacked") == 0, server.client().hgetall("unacked")
    finally:
        flower.proc.terminate()
        worker.stop()
    assert httpx.get(api.ops_url + "/queue").json()["total"] == 0

"""A worker SIGKILLed while it holds a job loses nothing: the job runs after redelivery."""

import json

from devstack.processes import Worker, wait_for
from shared.jobstore import Keyspace
from shared.schemas import JobStatus
from tests.utils.jobs import make_job, task_message
from tests.utils.samples import heldout_png

VISIBILITY = 3


def test_sigkilled_worker_jobs_are_redelivered_and_complete(private_stack, logdir):
    """The worker takes messages in bursts (shared/broker/patch.py): every one it holds is
    recorded as unacknowledged, so a SIGKILL loses none of them."""
    redis_server, api = private_stack
    client = redis_server.client()
    # This worker waits a minute to fill a batch, so it is holding the jobs when killed.
    holder = Worker(redis_server.url, logdir, max_delay_ms=60_000, max_batch_size=64,
                    visibility_timeout_seconds=VISIBILITY)
    try:
        files = [("files", (f"{i}.png", heldout_png(i))) for i in range(10)]
        items = api.http.post("/jobs/batch", files=files).json()["items"]
        job_ids = [item["job"]["id"] for item in items]
        # Delivered to the holder, not acknowledged: each recorded in the `unacked` hash.
        wait_for(lambda: all(_tag_of(client, job_id) for job_id in job_ids), 20, "delivery")
        assert client.llen("inference") == 0
        holder.kill()
    finally:
        holder.stop()
    assert {api.http.get(f"/jobs/{job_id}").json()["status"] for job_id in job_ids} == {JobStatus.queued}

    rescuer = Worker(redis_server.url, logdir, visibility_timeout_seconds=VISIBILITY)
    try:
        jobs = [api.wait_terminal(job_id, timeout=60) for job_id in job_ids]
    finally:
        rescuer.stop()
    assert [job["status"] for job in jobs] == ["succeeded"] * 10
    assert all(job["result"]["label"] for job in jobs)
    assert client.hlen("unacked") == 0
    assert api.ops.get("/queue").json() == {"queued": 0, "in_flight": 0, "total": 0,
                                           "lanes": {"high": 0, "normal": 0, "low": 0}}


def _tag_of(client, job_id: str) -> str | None:
    """Delivery tag of the unacked message carrying job_id (messages hold it in their headers)."""
    for tag, raw in client.hgetall("unacked").items():
        message = json.loads(raw)[0]
        if message["headers"]["id"] == job_id:
            return tag
    return None


def test_a_doorbell_lost_in_delivery_is_rung_again(private_stack, logdir, digit_png):
    """The fair queue's BRPOP takes only a doorbell (shared/broker/fair.py), so a Redis
    restart or a worker's death between BRPOP and the take loses no message, only the
    doorbell: the next heartbeat rings again, and the job runs."""
    redis_server, api = private_stack
    client = redis_server.client()
    job_id = api.submit(digit_png).json()["id"]
    assert client.rpop("inference") == "qi:doorbell"  # popped by a "worker", then lost
    assert client.llen("inference") == 0

    worker = Worker(redis_server.url, logdir, visibility_timeout_seconds=VISIBILITY)
    try:
        job = api.wait_terminal(job_id, timeout=30)
    finally:
        worker.stop()
    assert job["status"] == "succeeded"
    assert job["result"]["label"] == "7"
    assert "rang the inference queue's doorbell again" in worker.log.read_text()
    assert not client.hexists(Keyspace().job(job_id), "input"), "a finished record is compacted"


def test_training_job_whose_message_was_lost_in_delivery_is_found(store, redis_server):
    """kombu pops a plain (FIFO) queue's message and records it as unacknowledged in two
    steps; a Redis restart between them loses the message. The training queue is such a
    queue: the job's record keeps what a new message needs until the job starts."""
    client = redis_server.client()
    queue = "rescue-one"
    job = make_job(store, queue=queue, fair=False)
    assert client.rpop(queue) == job.message  # popped by a "worker", then lost
    assert rescue(store, queue) == [job.id]
    assert job_ids(client, queue) == [job.id]


def rescue(store, queue: str, limit: int = 100) -> list[str]:
    """What the worker's heartbeat does (shared.broker.rescue.rescue_lost): find the jobs whose message
    was lost, put back a new one for each; their ids."""
    lost = store.find_lost(queue, older_than=-1, limit=limit)
    assert store.requeue(queue, {job.job_id: task_message(job.job_id, queue) for job in lost}) == len(lost)
    return [job.job_id for job in lost]


def job_ids(client, queue: str) -> list[str]:
    return [json.loads(message)["headers"]["id"] for message in client.lrange(queue, 0, -1)]


def test_waiting_and_unacknowledged_jobs_are_not_duplicated(store, redis_server, digit_png):
    """The sweep leaves alone a job whose message is still queued or being worked on."""
    client = redis_server.client()
    queue = "rescue-check"
    working, lost, waiting = (make_job(store, queue=queue, fair=False) for _ in range(3))
    # Popped oldest first, as BRPOP does: one is being worked on (unacked), one was lost
    # between the pop and its unacked record, the newest still waits in the queue.
    assert client.rpop(queue) == working.message
    client.hset("unacked", working.fields["tag"], "[]")
    assert client.rpop(queue) == lost.message
    assert rescue(store, queue) == [lost.id]
    assert sorted(job_ids(client, queue)) == sorted([lost.id, waiting.id])
    client.hdel("unacked", working.fields["tag"])


def test_the_sweep_finds_a_lost_job_behind_a_long_queue_without_scanning_it(store, redis_server):
    """O(1) per job (the queue's oldest waiting message tells what was popped): a job lost
    in delivery is found behind 1,000 waiting ones, and none of those is pushed again."""
    client = redis_server.client()
    queue = "rescue-long"
    jobs = [make_job(store, queue=queue, fair=False) for _ in range(1000)]
    assert client.rpop(queue) == jobs[0].message  # popped, then lost before its unacked record
    assert rescue(store, queue, limit=2000) == [jobs[0].id]
    assert client.llen(queue) == 1000
    assert job_ids(client, queue)[0] == jobs[0].id, "put back at the head"

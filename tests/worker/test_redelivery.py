"""A worker SIGKILLed while it holds a job loses nothing: the job runs after redelivery."""

from shared.schemas import JobStatus
from tests.stack import Worker, wait_for

VISIBILITY = 3


def test_sigkilled_worker_job_is_redelivered_and_completes(private_stack, logdir, digit_png):
    redis_server, api = private_stack
    client = redis_server.client()
    # This worker waits a minute to fill a batch, so it is holding the job when killed.
    holder = Worker(redis_server.url, logdir, max_delay_ms=60_000, max_batch_size=64,
                    visibility_timeout_seconds=VISIBILITY)
    try:
        job_id = api.submit(digit_png).json()["id"]
        # Delivered to the holder, not acknowledged: Celery keeps it in the `unacked` hash.
        wait_for(lambda: client.hexists("unacked", _tag_of(client, job_id)), 20, "delivery")
        holder.kill()
    finally:
        holder.stop()
    assert api.http.get(f"/jobs/{job_id}").json()["status"] == JobStatus.queued

    rescuer = Worker(redis_server.url, logdir, visibility_timeout_seconds=VISIBILITY)
    try:
        job = api.wait_terminal(job_id, timeout=60)
    finally:
        rescuer.stop()
    assert job["status"] == "succeeded"
    assert job["result"]["label"] == "7"
    assert not client.hexists("unacked", _tag_of(client, job_id) or "-")


def _tag_of(client, job_id: str) -> str | None:
    """Delivery tag of the unacked message carrying job_id (messages hold it in their headers)."""
    import json

    for tag, raw in client.hgetall("unacked").items():
        message = json.loads(raw)[0]
        if message["headers"]["id"] == job_id:
            return tag
    return None

"""REDIS_MIN_REPLICAS_ACKED on a Redis without replicas: the worker's finish is on the
primary but never confirmed, so the worker hands the batch's messages back instead of
acknowledging them; their redelivery finds the jobs finished and is acknowledged. Nothing is
left unacknowledged, and the worker lives."""

from devstack.processes import Worker, wait_for
from tests.utils.samples import heldout_png


def test_an_unreplicated_finish_hands_its_messages_back_and_their_redelivery_settles(private_stack, logdir):
    server, api = private_stack
    worker = Worker(server.url, logdir, redis_min_replicas_acked=1, redis_wait_timeout_ms=10)
    client = server.client()
    try:
        job_id = api.submit(heldout_png(3)).json()["id"]  # the API: no WAIT of its own (its option is off)
        job = api.wait_terminal(job_id, timeout=60)
        assert job["status"] == "succeeded"
        # Handed back (the worker's retries ran out), redelivered, skipped as finished, acknowledged.
        wait_for(lambda: "handed back" in worker.log.read_text(), 60, "the hand-back")
        wait_for(lambda: client.hlen("unacked") == 0 and "skipping job" in worker.log.read_text(), 30,
                 "the redelivery to be acknowledged")
        assert worker.proc.poll() is None
    finally:
        worker.stop()

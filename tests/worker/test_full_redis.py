"""A full Redis (maxmemory reached, noeviction) stops new submissions, nothing else: the
worker keeps taking, running and finishing the jobs already queued, stays alive and
visible, and everything resumes when memory is freed."""

import time

from devstack.processes import Worker
from shared.codec import encode_pixels
from shared.jobstore import Keyspace, NewJob, new_job_id, new_record
from shared.jobstore.replies import SCRIPTS
from shared.preprocessing import pixels_of
from shared.settings import Settings
from tests.utils.jobs import task_message
from tests.utils.samples import DIGITS

JOBS = 40


def test_the_worker_finishes_queued_jobs_and_lives_through_a_full_redis(private_stack, logdir, store, digit_png):
    server, api = private_stack
    client, record = server.client(), Keyspace().job
    queue = Settings().queue_name
    worker = Worker(server.url, logdir, max_batch_size=4, max_delay_ms=5)
    try:
        # Jobs land in the queue and Redis is full in the same transaction: every one of
        # them is delivered, recorded as unacknowledged, started and finished while full.
        payload = encode_pixels(pixels_of(digit_png, DIGITS, 10**7))
        create = client.register_script(SCRIPTS["create"])
        pipe = client.pipeline(transaction=True)
        ids = []
        for _ in range(JOBS):
            job_id = new_job_id()
            tag, message = task_message(job_id, queue)
            fields = new_record(DIGITS, job_id, input=payload, tag=tag, owner=api.key_id)
            op = store.ops.create(NewJob(fields, message), queue)
            create(keys=op.keys, args=op.args, client=pipe)
            ids.append(job_id)
        pipe.config_set("maxmemory", 1)  # noeviction: every memory-growing write is refused now
        pipe.execute()

        jobs = [api.wait_terminal(job_id, timeout=60) for job_id in ids]
        assert [job["status"] for job in jobs] == ["succeeded"] * JOBS
        assert all(job["result"]["label"] == "7" for job in jobs)
        refused = api.submit(digit_png)
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) > 0
        time.sleep(6)  # a heartbeat (5 s) and kombu's restore sweep run while full
        assert worker.proc.poll() is None, "the worker keeps running"
        ready = api.ops.get("/readyz").json()
        assert ready["redis"] == "full"
        assert ready["workers"] == 1, "its heartbeat still lands"
        assert client.hlen("unacked") == 0, "every delivered message was acknowledged"
        assert not any(client.hexists(record(job_id), "input") for job_id in ids), "finished records are compacted"
    finally:
        client.config_set("maxmemory", 0)
    try:
        # Memory freed: submissions and the worker carry on, no restart needed.
        job = api.submit(digit_png).json()
        assert api.wait_terminal(job["id"])["status"] == "succeeded"
        assert api.ops.get("/readyz").json()["redis"] == "ok"
        assert "Unrecoverable" not in worker.log.read_text()
    finally:
        worker.stop()

"""Webhooks at least once across any single crash, and bounded: real Redis, API, workers
and a loopback receiver.

- an inference worker SIGKILLed right after its finish script (QI_TEST_KILL_AFTER_FINISH):
  the delivery was queued by that script, and arrives exactly once;
- a webhook worker SIGKILLed mid-attempt: kombu's record of the message (written by the same
  script that took it: the webhook queue is fair) brings it back after the visibility
  timeout; the receiver sees the same webhook-id again (at least once, as documented);
- a doorbell taken by a worker that died before taking the delivery: rung again;
- a receiver that keeps failing opens its breaker; after the cooldown one probe delivers;
- retries end WEBHOOK_RETRY_KEEP_SECONDS after the job finished, with a clear last_error."""

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.processes import Api, RedisServer, Worker, free_port, wait_for
from shared.broker import make_celery, webhook_hooks
from shared.jobstore import JobStore, Keyspace
from shared.settings import Settings
from tests.utils.jobs import make_job
from tests.utils.processes import new_key, start_api
from tests.utils.receiver import Receiver, hang

QUEUE = "webhooks"
VISIBILITY = 3  # kombu restores a killed worker's messages this long after their delivery
KEEP = 8  # WEBHOOK_RETRY_KEEP_SECONDS here
PREDICTION = '{"label": "7", "score": 0.9, "top_k": [{"label": "7", "score": 0.9}]}'
CELERY = make_celery(Settings(), "tests")  # builds messages only


@dataclass
class Stack:
    server: RedisServer
    api: Api
    receiver: Receiver
    env: dict
    logdir: Path
    sender: Worker | None = None

    def start_sender(self) -> None:
        self.sender = Worker(self.server.url, self.logdir, app="worker.webhooks.app", **self.env)

    def store(self) -> JobStore:
        """A store whose create queues a cached result's webhook, as the API's does."""
        return JobStore.connect(self.server.url, ttl_seconds=600, timeout=2, hooks=webhook_hooks(CELERY, QUEUE))

    def finished_job(self, path: str) -> str:
        """A job of a new key, finished at once (a cached result): its delivery queued by create."""
        _, owner = new_key(self.server.url)
        return make_job(self.store(), webhook_url=self.receiver.url(path), owner=owner, cached_result=PREDICTION).id

    def webhook(self, job_id: str) -> dict:
        job = self.store().get(job_id)
        assert job is not None
        assert job.webhook is not None
        return job.webhook.model_dump()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, logdir):
    server = RedisServer(tmp_path_factory.mktemp("once-redis"))
    server.start()
    env = dict(webhook_allowed_hosts="127.0.0.1", webhook_queue=QUEUE, webhook_backoff_seconds=0.3,
               webhook_backoff_max_seconds=1, webhook_timeout_seconds=6, visibility_timeout_seconds=VISIBILITY,
               webhook_breaker_failures=3, webhook_breaker_seconds=3, webhook_retry_keep_seconds=KEEP)
    api = start_api(server.url, logdir, **env)
    receiver = Receiver(free_port()).start()
    hooks = Stack(server, api, receiver, env, logdir)
    hooks.start_sender()
    yield hooks
    receiver.stop()
    for process in (hooks.sender, api):
        if process is not None:
            process.stop()
    server.stop()


def settled(receiver: Receiver, path: str, count: int, seconds: float = 2.0) -> list[dict]:
    """The requests to `path` once there are `count`, after `seconds` more for a duplicate."""
    wait_for(lambda: len(receiver.to(path)) >= count, 30, f"{count} request(s) to {path}")
    time.sleep(seconds)
    return receiver.to(path)


def test_an_inference_worker_killed_right_after_finishing_still_gets_the_webhook_out(stack, digit_png):
    killer = Worker(stack.server.url, stack.logdir, qi_test_kill_after_finish=1, **stack.env)
    try:
        job = stack.api.submit(digit_png, webhook_url=stack.receiver.url("/killed")).json()
        wait_for(lambda: killer.proc.poll() is not None, 60, "the worker to kill itself after finishing")
        assert stack.api.http.get(f"/jobs/{job['id']}").json()["status"] == "succeeded"
        [request] = settled(stack.receiver, "/killed", 1)
        assert request["headers"]["webhook-id"] == f"msg_{job['id']}_completed"
    finally:
        killer.stop()
    assert wait_for(lambda: (state := stack.webhook(job["id"]))["status"] == "delivered" and state, 10,
                    "delivered")["attempts"] == 1


def test_a_webhook_worker_killed_mid_attempt_delivers_after_the_visibility_timeout(stack):
    stack.receiver.script["/mid"] = [hang(5)]  # the first attempt hangs; the worker dies meanwhile
    job_id = stack.finished_job("/mid")
    wait_for(lambda: stack.receiver.to("/mid"), 20, "the first attempt")
    assert stack.sender is not None
    stack.sender.kill()
    assert stack.server.client().hlen("unacked") >= 1  # its message, recorded when it was taken
    stack.start_sender()
    first, second = settled(stack.receiver, "/mid", 2)
    # At least once: the receiver dedupes by webhook-id, which does not change.
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] == f"msg_{job_id}_completed"
    state = wait_for(lambda: (s := stack.webhook(job_id))["status"] == "delivered" and s, 10, "delivered")
    assert state["attempts"] == 1  # the killed attempt never recorded an outcome
    wait_for(lambda: stack.server.client().hlen("unacked") == 0, 10, "nothing left unacknowledged")


def test_a_doorbell_lost_with_a_webhook_worker_is_rung_again(stack):
    assert stack.sender is not None
    stack.sender.stop()
    client = stack.server.client()
    job_id = stack.finished_job("/bell")
    # A worker that took the doorbell by BRPOP and died before its take script: the delivery
    # itself never left Redis, only the doorbell is gone.
    assert client.lpop(QUEUE) is not None
    assert client.llen(Keyspace().fair_jobs(QUEUE, "normal", "-")) == 1
    stack.start_sender()
    [request] = settled(stack.receiver, "/bell", 1)
    assert request["headers"]["webhook-id"] == f"msg_{job_id}_completed"


def test_a_failing_receiver_opens_its_breaker_and_one_probe_closes_it(stack):
    stack.receiver.script["/flaky"] = [500, 500, 500]  # then 200
    job_id = stack.finished_job("/flaky")
    requests = settled(stack.receiver, "/flaky", 4)
    assert len(requests) == 4
    # Retries come within WEBHOOK_BACKOFF_MAX_SECONDS (1 s) and a due poll (1 s); after the
    # third failure in a row the breaker holds the next attempt for its cooldown (3 s).
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(requests)]
    assert gaps[2] >= 2.5, gaps
    state = wait_for(lambda: (s := stack.webhook(job_id))["status"] == "delivered" and s, 10, "delivered")
    assert state["attempts"] == 4  # deferrals are not attempts


def test_retries_end_the_documented_time_after_the_job_finished(stack):
    stack.receiver.always["/down"] = 503
    job_id = stack.finished_job("/down")
    state = wait_for(lambda: (s := stack.webhook(job_id))["status"] == "failed" and s, KEEP + 20, "given up")
    assert "WEBHOOK_RETRY_KEEP_SECONDS" in state["last_error"]
    assert state["attempts"] < Settings().webhook_max_attempts
    job = stack.store().get(job_id)
    assert job is not None
    assert job.finished_at is not None
    last = stack.receiver.to("/down")[-1]["at"]
    assert last <= job.finished_at.timestamp() + KEEP + 1  # no attempt past the cap
    assert not any(job_id in m for m in stack.server.client().zrange(Keyspace().webhook_retries(QUEUE), 0, -1))

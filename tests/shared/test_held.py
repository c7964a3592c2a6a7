"""The record budget's bookkeeping in the job store (lua/_held.lua), on a real Redis: every
script that ends a job keeps it counted for as long as its record lives, the quota no longer
counts it, a webhook retry that keeps a record longer keeps it counted longer, and a create
over the budget writes nothing."""

import time
import uuid

import pytest

from shared.jobstore import JobStore, NewJob, new_job_id, new_record
from shared.schemas import ErrorCode, JobError
from tests.utils.jobs import make_job, task_message
from tests.utils.samples import DIGITS

KEEP = 300  # FINISHED_JOB_TTL_SECONDS of the store under test
QUEUE = "held-test"


@pytest.fixture
def keeping(redis_server) -> JobStore:
    return JobStore.connect(redis_server.url, ttl_seconds=600, timeout=2, finished_ttl_seconds=KEEP)


def owner() -> str:
    return f"o-{uuid.uuid4().hex[:8]}"


def held_score(redis_server, store: JobStore, who: str, member: str) -> float:
    return float(redis_server.client().zscore(store.keys.active(who), member))


def assert_held_until_expiry(redis_server, store: JobStore, who: str, job_id: str) -> None:
    """Ended: out of the quota's count, held until its record expires (score -(expiry))."""
    client = redis_server.client()
    assert client.zcount(store.keys.active(who), 0, "+inf") == 0  # the quota's count
    expires = -held_score(redis_server, store, who, job_id)
    ttl = client.ttl(store.keys.job(job_id))
    assert abs(expires - (time.time() + ttl)) < 3, (expires, ttl)
    assert store.run(store.ops.held(who)).records == 1


def test_every_ending_keeps_the_job_counted_while_its_record_lives(keeping, redis_server):
    finished, cancelled, expired, lost = owner(), owner(), owner(), owner()
    job = make_job(keeping, queue=QUEUE, owner=finished)
    assert keeping.run(keeping.ops.held(finished)).records == 1
    assert held_score(redis_server, keeping, finished, job.id) > 0  # active: by created_at
    keeping.start([job.id], "run")
    keeping.finish({job.id: JobError(code=ErrorCode.inference_error, message="x")}, "run")
    assert_held_until_expiry(redis_server, keeping, finished, job.id)

    job = make_job(keeping, queue=QUEUE, owner=cancelled)
    assert keeping.run(keeping.ops.cancel(job.id)).before == "queued"
    assert_held_until_expiry(redis_server, keeping, cancelled, job.id)

    job = make_job(keeping, queue=QUEUE, owner=expired, expires_in=0.01)
    time.sleep(0.05)
    assert keeping.start([job.id], "run")[0].expired
    assert_held_until_expiry(redis_server, keeping, expired, job.id)

    job = make_job(keeping, queue=QUEUE, owner=lost)
    keeping.start([job.id], "run")
    ended = repr(time.time() - 5)  # as if its worker died 5 s after its lease ran out
    redis_server.client().hset(keeping.keys.job(job.id), "lease_until", ended)
    redis_server.client().zadd(keeping.keys.running, {job.id: float(ended)})
    assert job.id in keeping.sweep_lost(grace_seconds=2)
    assert_held_until_expiry(redis_server, keeping, lost, job.id)


def test_a_webhook_retry_that_keeps_the_record_keeps_it_counted(keeping, redis_server):
    who = owner()
    job = make_job(keeping, queue=QUEUE, owner=who)
    keeping.start([job.id], "run")
    keeping.finish({job.id: JobError(code=ErrorCode.inference_error, message="x")}, "run")
    before = -held_score(redis_server, keeping, who, job.id)
    assert keeping.schedule_webhook_retry("hooks", job.id, "m", 2 * KEEP, 60, cap=24 * 3600, owner=who) == 1
    after = -held_score(redis_server, keeping, who, job.id)
    assert after - before > KEEP  # follows the record's new TTL (2 KEEP + 60 from now)
    assert abs(after - (time.time() + redis_server.client().ttl(keeping.keys.job(job.id)))) < 3


def test_a_create_over_the_budget_writes_nothing(keeping, redis_server):
    who = owner()
    make_job(keeping, queue=QUEUE, owner=who)
    second = make_job(keeping, queue=QUEUE, owner=who)
    keeping.run(keeping.ops.cancel(second.id))  # ended: still held
    client = redis_server.client()
    owners_list = keeping.keys.fair_jobs(QUEUE, "normal", who)
    before = (client.zcard(keeping.keys.active(who)), client.zcard(keeping.keys.owner_index(who)),
              client.llen(owners_list))
    job_id = new_job_id()
    tag, message = task_message(job_id, QUEUE, owner=who)
    new = NewJob(new_record(DIGITS, job_id, input="AA==", tag=tag, owner=who), message, "idem", "fp")
    created = keeping.run(keeping.ops.create(new, QUEUE, max_records=2))
    assert created.fields is None
    assert created.held is not None
    assert created.held.records == 2
    assert 1 <= created.held.frees_in <= KEEP + 1
    assert (client.zcard(keeping.keys.active(who)), client.zcard(keeping.keys.owner_index(who)),
            client.llen(owners_list)) == before
    assert not client.exists(keeping.keys.job(job_id), keeping.keys.idempotency(f"{who}:idem"))
    assert keeping.run(keeping.ops.create(new, QUEUE, max_records=4)).fields is not None  # job + its key: 4

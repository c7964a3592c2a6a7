import time

from shared.jobstore import JobStore, to_job
from shared.schemas import ErrorCode, JobError, JobStatus, Prediction, WebhookEvent
from tests.utils.jobs import make_job


def test_create_get_and_ttl(store, redis_server):
    new = make_job(store)
    job = store.get(new.id)
    assert job == to_job(new.fields)
    assert job.status == JobStatus.queued
    assert job.model.name == "digits"
    assert 590 <= redis_server.client().ttl(store.keys.job(job.id)) <= 600


def test_transitions_are_guarded(store):
    a, b = make_job(store).id, make_job(store).id
    assert [s.before for s in store.start([a, b, "missing"], "run1")] == [JobStatus.queued, JobStatus.queued, None]
    assert [s.before for s in store.start([a], "run2")] == [JobStatus.running]
    prediction = Prediction(label="1", score=0.9, top_k=[{"label": "1", "score": 0.9}])
    store.finish({a: prediction, b: JobError(code=ErrorCode.invalid_input, message="y"), "missing": prediction},
                 "run1")
    assert store.get(a).result == prediction
    assert store.get(a).status == JobStatus.succeeded
    assert store.get(b).error.code == "invalid_input"
    assert store.get(b).finished_at is not None
    assert store.get("missing") is None
    # A finished job is never moved again.
    store.finish({a: JobError(code=ErrorCode.inference_error, message="late")}, "run1")
    assert store.get(a).status == JobStatus.succeeded


PREDICTION = Prediction(label="1", score=0.9, top_k=[{"label": "1", "score": 0.9}])


def end_lease(redis_server, store, job_id: str, seconds_ago: float = 1) -> None:
    """As if the job's worker died `seconds_ago` after its lease ran out."""
    ended = time.time() - seconds_ago
    redis_server.client().hset(store.keys.job(job_id), "lease_until", repr(ended))
    redis_server.client().zadd(store.keys.running, {job_id: ended})


def test_a_live_lease_keeps_a_redelivered_job_from_running_twice(store):
    job_id = make_job(store).id
    first = store.start([job_id], "run1", lease_seconds=60)[0]
    assert first.runs
    assert first.before == JobStatus.queued
    again = store.start([job_id], "run2", lease_seconds=60)[0]  # kombu redelivered its message
    assert not again.runs, "its first worker still holds the lease"
    assert again.before == JobStatus.running


def test_an_ended_lease_is_taken_over_and_the_late_finish_is_fenced_off(store, redis_server):
    job_id = make_job(store).id
    store.start([job_id], "run1", lease_seconds=60)
    end_lease(redis_server, store, job_id)
    assert store.start([job_id], "run2", lease_seconds=60)[0].runs, "its worker was lost: run it again"
    late = JobError(code=ErrorCode.inference_error, message="from the lost worker")
    assert store.finish({job_id: late}, "run1") == [], "the old run no longer holds the job"
    assert store.get(job_id).status == JobStatus.running
    assert store.finish({job_id: PREDICTION}, "run2") == [job_id]
    assert store.get(job_id).result == PREDICTION


def test_a_retried_start_still_runs_what_it_leased(store):
    """redis-py retries a script whose reply a Redis restart lost: the jobs the first call
    leased are run, not skipped as "running elsewhere" (then stuck until the lost-job sweep)."""
    job = make_job(store, payload="AAE=")
    first = store.start([job.id], "run-1")
    again = store.start([job.id], "run-1")
    assert first[0].runs
    assert again[0].runs
    assert again[0].input == "AAE="
    assert not store.start([job.id], "run-2")[0].runs, "another run still leaves it to its leaseholder"


def test_a_retried_finish_still_reports_what_it_finished(store):
    """redis-py retries a call whose reply was lost: the retry must name the same ids, or
    the completed webhooks would never be sent."""
    job_id = make_job(store).id
    store.start([job_id], "run1")
    assert store.finish({job_id: PREDICTION}, "run1") == [job_id]
    assert store.finish({job_id: PREDICTION}, "run1") == [job_id]
    assert store.finish({job_id: PREDICTION}, "another run") == []


def test_a_job_lost_too_often_fails_and_one_nobody_took_over_is_swept(store, redis_server):
    job_id = make_job(store).id
    for run in ("run1", "run2"):
        assert store.start([job_id], run, max_runs=2)[0].runs
        end_lease(redis_server, store, job_id)
    third = store.start([job_id], "run3", max_runs=2)[0]
    assert not third.runs
    assert third.ended == ErrorCode.worker_lost
    assert store.get(job_id).error.code == ErrorCode.worker_lost

    orphan = make_job(store, webhook_url="https://hooks.example.com/x").id
    store.start([orphan], "run1")
    end_lease(redis_server, store, orphan, seconds_ago=5)
    assert store.sweep_lost(grace_seconds=60) == {}, "still within the grace: a redelivery may come"
    assert store.sweep_lost(grace_seconds=2) == {orphan: [WebhookEvent.completed]}
    job = store.get(orphan)
    assert job.status == JobStatus.failed
    assert job.error.code == ErrorCode.worker_lost
    assert store.sweep_lost(grace_seconds=2) == {}, "never left running, and swept once"


def test_expiry_removes_records(store, redis_server):
    short = JobStore.connect(redis_server.url, ttl_seconds=1, timeout=2)
    job = make_job(short)
    time.sleep(1.2)
    assert store.get(job.id) is None


def test_heartbeats(store):
    store.heartbeat("w1@host", ttl=5)
    assert "w1@host" in [w.name for w in store.workers()]
    store.forget_worker("w1@host")
    assert "w1@host" not in [w.name for w in store.workers()]

import time

from shared.jobstore import JobStore, to_job
from shared.schemas import ErrorCode, JobError, JobStatus, Prediction
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
    assert [s.before for s in store.start([a, b, "missing"])] == [JobStatus.queued, JobStatus.queued, None]
    assert [s.before for s in store.start([a])] == [JobStatus.running]
    prediction = Prediction(label="1", score=0.9, top_k=[{"label": "1", "score": 0.9}])
    store.finish({a: prediction, b: JobError(code=ErrorCode.invalid_input, message="y"), "missing": prediction})
    assert store.get(a).result == prediction
    assert store.get(a).status == JobStatus.succeeded
    assert store.get(b).error.code == "invalid_input"
    assert store.get(b).finished_at is not None
    assert store.get("missing") is None
    # A finished job is never moved again.
    store.finish({a: JobError(code=ErrorCode.inference_error, message="late")})
    assert store.get(a).status == JobStatus.succeeded


def test_expiry_removes_records(store, redis_server):
    short = JobStore.connect(redis_server.url, ttl_seconds=1, timeout=2)
    job = make_job(short)
    time.sleep(1.2)
    assert store.get(job.id) is None


def test_heartbeats(store):
    store.heartbeat("w1@host", ttl=5)
    assert "w1@host" in store.workers()
    store.forget_worker("w1@host")
    assert "w1@host" not in store.workers()

import time

from shared.registry import Registry
from shared.schemas import JobError, JobStatus, Prediction
from shared.settings import Settings

MANIFEST = Registry(Settings().model_dir, "digits").resolve(None)


def test_create_get_and_ttl(store):
    job = store.create(MANIFEST)
    assert store.get(job.id) == job
    assert job.status == JobStatus.queued and job.model.name == "digits"
    assert 590 <= store.redis.ttl(f"job:{job.id}") <= 600


def test_transitions_are_guarded(store):
    a, b = store.create(MANIFEST).id, store.create(MANIFEST).id
    assert [s.before for s in store.start([a, b, "missing"])] == [JobStatus.queued, JobStatus.queued, None]
    assert [s.before for s in store.start([a])] == [JobStatus.running]
    prediction = Prediction(label="1", score=0.9, top_k=[{"label": "1", "score": 0.9}])
    store.finish({a: prediction, b: JobError(code="x", message="y"), "missing": prediction})
    assert store.get(a).result == prediction and store.get(a).status == JobStatus.succeeded
    assert store.get(b).error.code == "x" and store.get(b).finished_at is not None
    assert store.get("missing") is None
    # A finished job is never moved again.
    store.finish({a: JobError(code="late", message="")})
    assert store.get(a).status == JobStatus.succeeded


def test_expiry_removes_records(store):
    short = type(store)(store.redis, ttl_seconds=1)
    job = short.create(MANIFEST)
    time.sleep(1.2)
    assert store.get(job.id) is None


def test_heartbeats(store):
    store.heartbeat("w1@host", ttl=5)
    assert "w1@host" in store.workers()
    store.forget_worker("w1@host")
    assert "w1@host" not in store.workers()

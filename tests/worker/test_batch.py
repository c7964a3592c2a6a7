"""run_batch against a real Redis job store and the real model."""

import time

import numpy as np
import pytest

from shared.codec import encode_pixels
from shared.preprocessing import pixels_of
from shared.schemas import JobStatus
from tests.utils.jobs import make_job
from tests.utils.samples import REGISTRY
from worker.inference.batch import Item, parse, run_batch
from worker.inference.runtime import Runtime


@pytest.fixture(scope="module")
def models():
    return Runtime(REGISTRY, max_batch_size=8).models


@pytest.fixture
def manifest(models):
    return models["digits:1"].manifest


@pytest.fixture
def seven(digit_png, manifest) -> str:
    return encode_pixels(pixels_of(digit_png, manifest, 10**7))


def test_bad_job_fails_alone_rest_succeed(store, models, manifest, seven):
    good = [make_job(store, manifest, payload=seven).id for _ in range(3)]
    bad_shape = make_job(store, manifest, payload=encode_pixels(np.zeros((4, 4)))).id
    bad_encoding = make_job(store, manifest, payload="%%% not base64 %%%").id
    items = [Item(j, manifest.key) for j in (*good, bad_shape, bad_encoding)]

    run_batch(items, store, models)

    for job_id in good:
        job = store.get(job_id)
        assert job.status == JobStatus.succeeded
        assert job.result.label == "7"
    for job_id, words in ((bad_shape, "bytes"), (bad_encoding, "")):
        job = store.get(job_id)
        assert job.status == JobStatus.failed
        assert job.error.code == "invalid_input"
        assert words in job.error.message


def test_unknown_model_fails_the_job(store, models, manifest, seven):
    job_id = make_job(store, manifest, payload=seven).id
    run_batch([Item(job_id, "other:9")], store, models)
    assert store.get(job_id).error.code == "model_unavailable"


def test_finished_cancelled_and_expired_jobs_are_not_run_again(store, redis_server, models, manifest, seven):
    done = make_job(store, manifest, payload=seven).id
    run_batch([Item(done, manifest.key)], store, models)
    first = store.get(done)
    cancelled = make_job(store, manifest, payload=seven).id
    redis_server.client().hset(store.keys.job(cancelled), "status", "cancelled")

    ran = run_batch(
        [Item(done, manifest.key), Item(cancelled, manifest.key), Item("gone", manifest.key)],
        store, models,
    )
    assert ran.outcomes == {}
    assert ran.ended == {}
    assert store.get(done) == first
    assert store.get(cancelled).status == JobStatus.cancelled
    assert store.get("gone") is None, "an expired job must not be re-created"


def test_job_left_running_by_a_dead_worker_runs_again(store, redis_server, models, manifest, seven):
    job_id = make_job(store, manifest, payload=seven).id
    assert store.start([job_id], "dead worker's run", lease_seconds=0.2)[0].before == JobStatus.queued
    time.sleep(0.3)  # its lease ends: no heartbeat renews it
    run_batch([Item(job_id, manifest.key), Item(job_id, manifest.key)], store, models)
    assert store.get(job_id).status == JobStatus.succeeded


def test_a_redelivered_job_whose_worker_lives_is_not_run_twice(store, models, manifest, seven):
    job_id = make_job(store, manifest, payload=seven).id
    store.start([job_id], "live worker's run", lease_seconds=60)
    ran = run_batch([Item(job_id, manifest.key)], store, models)
    assert ran.outcomes == {}
    assert store.get(job_id).status == JobStatus.running, "left to the worker that holds its lease"


def test_parse_drops_malformed_messages():
    assert parse(("a", "digits:1", 1.5)) == Item("a", "digits:1", 1.5)
    assert parse(("a", "digits:1", "AAAA", 1.5)) == Item("a", "digits:1", 1.5, "AAAA"), "queued before an upgrade"
    assert parse(("only-one",)) is None
    assert parse((1, 2, 3)) is None

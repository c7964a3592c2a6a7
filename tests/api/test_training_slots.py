"""TRAINING_MAX_QUEUED_JOBS is a bound, not a hint: taken atomically (concurrent POSTs cannot
overshoot it) and counting the job that trains as well as those queued; and a training run
that was killed leaves no staging folder behind once the training worker starts again.

A real Redis, API and training worker on a MODEL_DIR of their own (a copy of digits/1)."""

import shutil
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from devstack.commands import ROOT, training_worker_argv
from devstack.processes import RedisServer, Worker, wait_for
from tests.utils.processes import new_key, start_api
from tests.utils.samples import digit_files, make_zip

CAP = 2


@pytest.fixture(scope="module")
def stack(tmp_path_factory, logdir):
    model_dir = tmp_path_factory.mktemp("model_dir")
    shutil.copytree(ROOT / "models" / "digits" / "1", model_dir / "digits" / "1")
    server = RedisServer(tmp_path_factory.mktemp("slots-redis"))
    server.start()
    settings = {"model_dir": model_dir, "training_max_queued_jobs": CAP, "training_epochs": 2}
    api = start_api(server.url, logdir, **settings)
    admin_key, _ = new_key(server.url, admin=True)
    api.http.headers["Authorization"] = f"Bearer {admin_key}"
    yield server, api, model_dir, settings, logdir
    api.stop()
    server.stop()


def post(api, archive: bytes) -> httpx.Response:
    return api.http.post("/models/digits/versions", files={"file": ("train.zip", archive, "application/zip")})


def status_of(api, job_id: str) -> str:
    return api.http.get(f"/jobs/{job_id}").json()["status"]


def test_the_cap_is_atomic_counts_the_running_job_and_staging_left_by_a_kill_is_swept(stack):
    server, api, model_dir, settings, logdir = stack
    archive = make_zip(digit_files([3, 4], 6))
    # Concurrent POSTs, no training worker yet: exactly CAP are recorded, the others get 503.
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(api, archive), range(8)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [202] * CAP + [503] * (8 - CAP), [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 503)
    assert "queued or running" in refused.json()["detail"]
    assert refused.headers["Retry-After"]
    # In queue order (by created_at, as create.lua queues them), not in the order of the
    # answers: the worker must meet the job that runs before the cancelled one.
    recorded = [a.json()["id"] for a in answers if a.status_code == 202]
    first, second = sorted(recorded, key=lambda job_id: api.http.get(f"/jobs/{job_id}").json()["created_at"])
    # A run killed while it wrote its version left its staging folder (and one of a job
    # that never existed): the training worker's start sweeps both.
    left = [model_dir / ".training" / job_id / "2" for job_id in (first, "0" * 32)]
    for folder in left:
        folder.mkdir(parents=True)
        (folder / "model.keras").write_bytes(b"half written")
    assert status_of(api, first) == "queued"  # (a running job's folder is its run's to clear)
    assert api.http.post(f"/jobs/{second}/cancel").status_code == 200  # its message still waits
    trainer = Worker(server.url, logdir, argv=training_worker_argv("slots-test"), **settings)
    try:
        wait_for(lambda: not any(f.parent.exists() for f in left), 30, "the staging folders swept")
        wait_for(lambda: status_of(api, first) == "running", 60, "the first job to start")
        # One job trains, the cancelled one's message waits: both hold their slot. A count of
        # the queue alone (1 message) would have let this one in.
        assert post(api, archive).status_code == 503
        wait_for(lambda: status_of(api, first) in ("succeeded", "failed"), 240, "the first job to end")
        assert status_of(api, first) == "succeeded"
        # Done with both messages (one ran, one was skipped): the slots are free again.
        third = wait_for(lambda: (a := post(api, archive)).status_code == 202 and a, 30, "a free slot")
        wait_for(lambda: status_of(api, third.json()["id"]) == "succeeded", 240, "the third job to end")
    finally:
        trainer.stop()
    assert not (model_dir / ".training").exists() or not any((model_dir / ".training").iterdir())

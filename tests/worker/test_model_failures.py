"""A model that fails to load is reported and fails its own jobs at once; the other models
keep serving, and the worker neither dies nor loops on redeliveries."""

import json
import shutil

import pytest

from devstack.processes import RedisServer, Worker
from tests.utils.processes import start_api
from tests.utils.samples import DIGITS


@pytest.fixture(scope="module")
def broken_stack(tmp_path_factory, logdir):
    """digits:1 as committed, and broken:1: the digits artifact under a manifest whose
    input_shape does not match it."""
    models = tmp_path_factory.mktemp("models")
    shutil.copytree(DIGITS.directory, models / "digits" / "1")
    broken = models / "broken" / "1"
    shutil.copytree(DIGITS.directory, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest.update(name="broken", input_shape=[16, 16, 1])
    (broken / "manifest.json").write_text(json.dumps(manifest))
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    worker = Worker(server.url, logdir, model_dir=models)
    api = start_api(server.url, logdir, model_dir=models)
    yield api, worker
    api.stop()
    worker.stop()
    server.stop()


def test_the_failure_is_reported_in_readyz_and_models(broken_stack):
    api, _ = broken_stack
    (serving,) = api.ops.get("/readyz").json()["serving"]
    assert serving["models"] == ["digits:1"]
    assert "input_shape" in serving["failed"]["broken:1"]
    models = {m["name"]: m for m in api.http.get("/models").json()}
    assert models["digits"]["status"] == "serving"
    assert models["broken"]["status"] == "failed"
    assert "input_shape" in models["broken"]["error"]


def test_its_jobs_fail_at_once_and_the_others_are_served(broken_stack, digit_png):
    api, worker = broken_stack
    doomed = api.submit(digit_png, model="broken").json()
    served = api.submit(digit_png).json()
    failed = api.wait_terminal(doomed["id"], timeout=10)
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "model_unavailable"
    assert "failed to load" in failed["error"]["message"]
    assert api.wait_terminal(served["id"], timeout=10)["result"]["label"] == "7"
    assert worker.proc.poll() is None

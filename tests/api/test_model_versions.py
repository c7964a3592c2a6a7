"""Model versions without restarts (issue #13, items 1 and 4), on a real stack: a version
added to MODEL_DIR serves without a restart (at once through POST /models/reload, or found
by the scan), the default switches and rolls back on every API process, an unloaded version
is loaded again for its jobs, and a broken version is reported while the others serve."""

import json
import shutil
import time
from pathlib import Path

import httpx
import pytest

from devstack.processes import RedisServer, Worker, wait_for
from tests.utils.processes import new_key, start_api
from tests.utils.samples import DIGITS

SCAN_SECONDS = 2  # MODEL_SCAN_SECONDS, lowered from 10 to keep the test short


def add_version(models: Path, version: str, artifact: bytes | None = None, manifest: str | None = None) -> None:
    """digits:<version>: a copy of the committed digits (or `artifact` / `manifest` text
    instead), written beside and renamed into place, as an operator should."""
    staging = models / f".staging-{version}"
    shutil.copytree(DIGITS.directory, staging)
    record = json.loads((staging / "manifest.json").read_text())
    text = manifest if manifest is not None else json.dumps({**record, "version": version})
    (staging / "manifest.json").write_text(text)
    if artifact is not None:
        (staging / record["artifact"]).write_bytes(artifact)
    staging.rename(models / "digits" / version)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, logdir):
    models = tmp_path_factory.mktemp("models")
    (models / "digits").mkdir()
    shutil.copytree(DIGITS.directory, models / "digits" / "1")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    settings = {"model_dir": models, "model_scan_seconds": SCAN_SECONDS}
    worker = Worker(server.url, logdir, **settings)
    api, other = start_api(server.url, logdir, **settings), start_api(server.url, logdir, **settings)
    admin_key, _ = new_key(server.url, admin=True)
    admin = httpx.Client(base_url=api.url, timeout=30, headers={"Authorization": f"Bearer {admin_key}"})
    yield models, api, other, admin, worker
    admin.close()
    other.stop()
    api.stop()
    worker.stop()
    server.stop()


def status_of(api, key: str) -> dict | None:
    return next((m for m in api.http.get("/models").json() if f"{m['name']}:{m['version']}" == key), None)


def serving(api, key: str) -> bool:
    found = status_of(api, key)
    return found is not None and found["status"] == "serving"


def run(api, image: bytes, model: str) -> dict:
    accepted = api.submit(image, model=model)
    assert accepted.status_code == 202, accepted.text
    return api.wait_terminal(accepted.json()["id"], timeout=30)


def loaded_digits(api) -> list[str]:
    (worker,) = api.ops.get("/readyz").json()["serving"]
    return [key for key in worker["models"] if key.startswith("digits:")]


def test_a_new_version_serves_at_once_after_a_reload(stack, digit_png):
    models, api, other, admin, _ = stack
    add_version(models, "2")
    assert api.http.post("/models/reload").status_code == 403  # not an admin key
    reloaded = admin.post("/models/reload")
    assert reloaded.status_code == 200, reloaded.text
    assert {m["version"] for m in reloaded.json() if m["name"] == "digits"} == {"1", "2"}
    wait_for(lambda: serving(api, "digits:2") and serving(other, "digits:2"), 20, "digits:2 served")
    job = run(api, digit_png, "digits:2")
    assert (job["status"], job["model"], job["result"]["label"]) == ("succeeded", {"name": "digits", "version": "2"},
                                                                       "7")
    assert run(other, digit_png, "digits")["model"]["version"] == "2"  # no default set: the newest


def test_the_default_switches_and_rolls_back_on_every_api(stack, digit_png):
    _, api, other, admin, _ = stack
    for version in ("1", "2"):  # the switch, then the rollback
        answer = admin.post("/models/digits/default", json={"version": version})
        assert answer.status_code == 200, answer.text
        assert [m["version"] for m in answer.json() if m["default_version"]] == [version]
        job = run(api, digit_png, "digits")  # the API that was told: at once
        assert (job["status"], job["model"]["version"]) == ("succeeded", version)
        # The other API process follows within seconds.
        wait_for(lambda v=version: status_of(other, f"digits:{v}")["default_version"], 5, "the other API")
        assert run(other, digit_png, "digits")["model"]["version"] == version
    assert api.http.post("/models/digits/default", json={"version": "1"}).status_code == 403
    assert admin.post("/models/digits/default", json={"version": "9"}).status_code == 404
    assert admin.post("/models/nothing/default", json={"version": "1"}).status_code == 404
    assert admin.post("/models/digits/default", json={"version": "1", "x": 1}).status_code == 422


def test_a_folder_is_found_without_a_reload_and_memory_stays_bounded(stack, digit_png):
    models, api, other, admin, _ = stack
    started = time.monotonic()
    add_version(models, "3")
    wait_for(lambda: serving(api, "digits:3") and serving(other, "digits:3"), 30, "digits:3 found by the scan")
    assert time.monotonic() - started < 30
    # MAX_LOADED_VERSIONS=2: the default (2) and the newcomer (3); 1 was unloaded...
    assert sorted(loaded_digits(api)) == ["digits:2", "digits:3"]
    assert status_of(api, "digits:1")["status"] == "unavailable"
    # ...and no key but an admin's may name it now (409 version_not_loaded: not the default,
    # not loaded, not marked loadable), so no tenant can make the workers load versions at will...
    refused = api.submit(digit_png, model="digits:1")
    assert refused.status_code == 409, refused.text
    assert "digits:1 is not the default version" in refused.json()["detail"]
    # ...until an admin marks it loadable: then it is loaded again on demand for a job that names it.
    assert api.http.post("/models/digits/versions/1/loadable").status_code == 403
    marked = admin.post("/models/digits/versions/1/loadable")
    assert (marked.status_code, marked.json()) == (200, {"model": "digits:1", "loadable": True}), marked.text
    assert admin.post("/models/digits/versions/9/loadable").status_code == 404
    job = run(api, digit_png, "digits:1")
    assert (job["status"], job["model"]["version"], job["result"]["label"]) == ("succeeded", "1", "7")
    wait_for(lambda: sorted(loaded_digits(api)) == ["digits:1", "digits:2"], 10, "digits:1 back, digits:3 out")


def test_a_broken_version_is_reported_and_the_others_serve(stack, digit_png):
    models, api, _, admin, worker = stack
    add_version(models, "4", artifact=b"not a keras model")
    add_version(models, "bad", manifest="{not json")
    assert admin.post("/models/reload").status_code == 200
    broken = wait_for(lambda: (m := status_of(api, "digits:4")) and m["status"] == "failed" and m, 20,
                      "digits:4 reported failed")
    assert broken["error"]
    readiness = {f"{m['name']}:{m['version']}": m for m in api.ops.get("/readyz").json()["models"]}
    assert readiness["digits:4"]["status"] == "failed"
    assert readiness["digits:4"]["error"] == broken["error"]
    assert readiness["digits:bad"]["status"] == "failed"
    assert "invalid model manifest" in readiness["digits:bad"]["error"]
    assert readiness["digits:2"]["status"] == "serving"
    assert readiness["digits:2"]["default_version"]
    assert readiness["digits:2"]["workers"] == api.ops.get("/readyz").json()["worker_names"]
    started = time.monotonic()
    refused = api.submit(digit_png, model="digits:4")  # a tenant's: 409, saying it failed to load
    assert refused.status_code == 409, refused.text
    assert "failed to load" in refused.json()["detail"]
    accepted = admin.post("/jobs", files={"file": ("7.png", digit_png, "image/png")}, data={"model": "digits:4"})
    assert accepted.status_code == 202, accepted.text  # an admin's job may name any version: it fails, at once
    doomed = wait_for(lambda: (j := admin.get(f"/jobs/{accepted.json()['id']}").json())["status"] == "failed" and j,
                      30, "the admin's job to fail")
    assert (doomed["status"], doomed["error"]["code"]) == ("failed", "model_unavailable")
    assert time.monotonic() - started < 10
    assert run(api, digit_png, "digits")["result"]["label"] == "7"  # the default, 2, serves on
    refused = admin.post("/models/digits/default", json={"version": "4"})
    assert refused.status_code == 409
    assert "failed to load" in refused.json()["detail"]
    assert worker.proc.poll() is None

"""Training as a job (POST /models/{name}/versions, POST /models): a real Redis, API and
training worker (worker/training/app.py) on a MODEL_DIR of their own (a copy of digits/1).

A ZIP of rendered digits fine-tunes digits into version 2, which passes its own held-out
check (held-out accuracy >= 0.85, on a fifth of each label's pictures it never trained on)
and is activated exactly as the rule says; a new model trains from scratch; every bad
archive gets its 4xx and nothing is recorded or queued."""

import hashlib
import io
import json
import shutil
import stat
import zipfile

import httpx
import numpy as np
import pytest

from devstack.commands import ROOT, training_worker_argv
from devstack.processes import RedisServer, Worker, wait_for
from shared.catalog import Catalog
from shared.jobstore import Keyspace
from tests.utils.processes import new_key, start_api
from tests.utils.samples import digit_files, make_zip

EPOCHS = 8
MIN_HELDOUT_ACCURACY = 0.85
MAX_UPLOAD = 4 * 1024 * 1024
MAX_UNCOMPRESSED = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def stack(tmp_path_factory, logdir):
    model_dir = tmp_path_factory.mktemp("model_dir")
    shutil.copytree(ROOT / "models" / "digits" / "1", model_dir / "digits" / "1")
    server = RedisServer(tmp_path_factory.mktemp("training-redis"))
    server.start()
    settings = {"model_dir": model_dir, "training_max_upload_bytes": MAX_UPLOAD,
                "training_max_uncompressed_bytes": MAX_UNCOMPRESSED}
    api = start_api(server.url, logdir, **settings)
    admin_key, _ = new_key(server.url, admin=True)
    api.http.headers["Authorization"] = f"Bearer {admin_key}"
    trainer = Worker(server.url, logdir, argv=training_worker_argv("training-test"), training_epochs=EPOCHS,
                     **settings)
    yield server, api, model_dir
    trainer.stop()
    api.stop()
    server.stop()


def post_version(api, data: bytes, name: str = "digits", **form: str) -> httpx.Response:
    return api.http.post(f"/models/{name}/versions", files={"file": ("train.zip", data, "application/zip")},
                         data=form)


def wait_done(api, job_id: str, timeout: float = 240) -> tuple[dict, list[dict]]:
    """The finished job, and every progress seen on the way."""
    seen: list[dict] = []

    def finished() -> dict | None:
        job = api.http.get(f"/jobs/{job_id}", params={"wait": 2}).json()
        if job.get("progress") and job["progress"] not in seen:
            seen.append(job["progress"])
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    return wait_for(finished, timeout, f"training job {job_id}"), seen


def _symlink_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in digit_files([0, 1], 5).items():
            archive.writestr(name, data)
        link = zipfile.ZipInfo("1/link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    return out.getvalue()


BAD = {
    "not a zip": (lambda: b"this is not a zip archive", 415),
    "path traversal": (lambda: make_zip({**digit_files([0, 1], 5), "../evil/0.png": digit_files([0], 1)["0/0.png"]}),
                       422),
    "absolute path": (lambda: make_zip({**digit_files([0, 1], 5), "/abs/0.png": digit_files([0], 1)["0/0.png"]}), 422),
    "symbolic link": (_symlink_zip, 422),
    "zip bomb (expands past the limit)": (
        lambda: make_zip({**digit_files([0, 1], 5), "1/bomb.png": bytes(2 * MAX_UNCOMPRESSED)}), 413),
    "zip bomb (compression ratio)": (lambda: make_zip({**digit_files([0, 1], 5), "1/bomb.png": bytes(2 << 20)}), 413),
    "not an image": (lambda: make_zip({**digit_files([0, 1], 5), "1/notes.txt": b"hello"}), 422),
    "too few images per label": (lambda: make_zip({**digit_files([0, 1], 5), **digit_files([2], 2)}), 422),
    "one label only": (lambda: make_zip(digit_files([0], 8)), 422),
    "files outside label folders": (lambda: make_zip({**digit_files([0, 1], 5), "loose.png": b"x"}), 422),
    "upload over the limit": (lambda: make_zip({"0/big.png": np.random.default_rng(0).bytes(MAX_UPLOAD + 1)},
                                               zipfile.ZIP_STORED), 413),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_archive_gets_a_4xx_and_queues_nothing(stack, case):
    server, api, _ = stack
    client = server.client()
    before = client.zcard(Keyspace().index)
    build, expected = BAD[case]
    response = post_version(api, build())
    assert response.status_code == expected, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"]
    assert client.llen("training") == 0
    assert client.zcard(Keyspace().index) == before


def test_training_needs_an_admin_key_and_a_known_model(stack):
    server, api, _ = stack
    plain, _ = new_key(server.url)
    data = make_zip(digit_files([0, 1], 5))
    response = httpx.post(f"{api.url}/models/digits/versions", files={"file": ("t.zip", data)},
                          headers={"Authorization": f"Bearer {plain}"})
    assert response.status_code == 403, response.text
    assert post_version(api, data, name="nosuchmodel").status_code == 404
    assert api.http.post("/models", files={"file": ("t.zip", data)}, data={"name": "digits"}).status_code == 409
    assert server.client().llen("training") == 0


def test_a_training_job_fine_tunes_a_version_that_passes_its_held_out_check(stack):
    server, api, model_dir = stack
    data = make_zip(digit_files(list(range(10)), 12, prefix="my-digits/"))  # one folder wraps the labels
    response = post_version(api, data)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "training"
    assert job["status"] == "queued"
    assert job["model"] == {"name": "digits", "version": "2"}
    assert response.headers["location"] == f"/jobs/{job['id']}"

    job, seen = wait_done(api, job["id"])
    assert job["status"] == "succeeded", job
    result = job["training"]
    assert result["version"] == "2"
    assert result["fine_tuned_from"] == "digits:1"
    assert result["labels"] == [str(d) for d in range(10)]
    assert result["heldout_size"] == 20
    assert result["train_size"] == 100
    assert result["heldout_accuracy"] >= MIN_HELDOUT_ACCURACY, result
    assert result["training_data_sha256"] == hashlib.sha256(data).hexdigest()
    assert job["progress"]["epoch"] == EPOCHS
    assert job["progress"]["epochs"] == EPOCHS
    assert any(p["stage"] == "training" and p["epoch"] >= 1 for p in seen) or job["progress"]["epoch"] == EPOCHS

    manifest = json.loads((model_dir / "digits" / "2" / "manifest.json").read_text())
    assert manifest["metrics"]["heldout_accuracy"] == result["heldout_accuracy"]
    assert manifest["metrics"]["heldout_size"] == 20
    assert manifest["training"]["data_sha256"] == result["training_data_sha256"]
    assert manifest["preprocessing"]["polarity"] == "auto"
    assert manifest["input_shape"] == [8, 8, 1]
    assert (model_dir / "digits" / "2" / "model.keras").is_file()
    assert not list((model_dir / ".training").glob("*/*"))  # nothing left staged

    # The rule: activated only if at least as accurate as digits:1 (0.9889, in its manifest).
    assert result["activated"] == (result["heldout_accuracy"] >= 0.9889), result
    defaults = Catalog(server.client()).defaults()
    assert defaults["digits"] == ("2" if result["activated"] else "1")
    wait_for(lambda: any(m["name"] == "digits" and m["version"] == "2" for m in api.http.get("/models").json()),
             15, "the API to list digits:2")


def test_a_new_model_trains_from_scratch_and_activate_always_activates_it(stack):
    _, api, model_dir = stack
    data = make_zip(digit_files([0, 1, 7], 10, seed=2))
    response = api.http.post("/models", files={"file": ("t.zip", data, "application/zip")},
                             data={"name": "zero-one-seven", "activate": "always"})
    assert response.status_code == 202, response.text
    job, _ = wait_done(api, response.json()["id"])
    assert job["status"] == "succeeded", job
    result = job["training"]
    assert result["version"] == "1"
    assert result["fine_tuned_from"] is None
    assert result["activated"] is True
    assert result["labels"] == ["0", "1", "7"]
    assert result["heldout_size"] == 6
    assert 0 <= result["heldout_accuracy"] <= 1
    assert (model_dir / "zero-one-seven" / "1" / "model.keras").is_file()


def test_a_queued_training_job_can_be_cancelled(stack):
    """One job at a time: a second job waits in the queue while the first trains, and a
    queued training job cancels like any job (the worker then skips it)."""
    _server, api, _ = stack
    first = post_version(api, make_zip(digit_files(list(range(10)), 12, seed=3)))
    second = post_version(api, make_zip(digit_files([3, 4], 5)))
    assert first.status_code == second.status_code == 202
    cancelled = api.http.post(f"/jobs/{second.json()['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["kind"] == "training"
    job, _ = wait_done(api, first.json()["id"])
    assert job["status"] == "succeeded", job
    assert api.http.get(f"/jobs/{second.json()['id']}").json()["status"] == "cancelled"

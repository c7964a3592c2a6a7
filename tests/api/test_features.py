"""Feature-vector models (issue #13, item 3): the committed Iris model answers JSON bodies on
POST /jobs and POST /predict, checked against its manifest's feature names; a worker that
finds its artifact missing trains it at start from the bundled data."""

import json
import shutil

import pytest

from devstack.commands import ROOT
from devstack.processes import RedisServer, Worker
from models.train_iris import FEATURES, LABELS, split
from tests.utils.processes import start_api
from tests.utils.samples import heldout_png

SETOSA = [5.1, 3.5, 1.4, 0.2]  # the first flower of the data set
PROBLEM_JSON = "application/problem+json"


def named(values) -> dict[str, float]:
    return dict(zip(FEATURES, (float(v) for v in values), strict=True))


def test_models_lists_iris_with_its_feature_names(api, worker):
    iris = {m["name"]: m for m in api.http.get("/models").json()}["iris"]
    assert iris == {"name": "iris", "version": "1", "kind": "features", "input_shape": [4],
                    "feature_names": FEATURES, "labels": 3, "label_names": LABELS, "default": False,
                    "status": "serving", "error": None, "default_version": True}


def test_heldout_accuracy_through_predict(api, worker):
    """Every held-out flower (never trained on) through POST /predict, by position and by name."""
    _, test_x, _, test_y = split()
    right = 0
    for index, (row, label) in enumerate(zip(test_x, test_y, strict=True)):
        body = {"model": "iris", "features": [float(v) for v in row]} if index % 2 else {
            "model": "iris:1", "inputs": named(row)}
        response = api.http.post("/predict", json=body)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert len(answer["probabilities"]) == 3
        right += answer["class_label"] == LABELS[label]
    accuracy = right / len(test_y)
    assert accuracy >= 0.9, accuracy
    manifest = json.loads((ROOT / "models" / "iris" / "1" / "manifest.json").read_text())
    assert manifest["metrics"]["heldout_accuracy"] >= 0.9
    assert manifest["metrics"]["heldout_size"] == len(test_y)


def test_jobs_take_json_with_the_forms_options(api, worker):
    response = api.http.post("/jobs", json={"model": "iris", "inputs": named(SETOSA), "expires_in": 60})
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/jobs/{response.json()['id']}"
    job = api.wait_terminal(response.json()["id"])
    assert job["status"] == "succeeded"
    assert job["model"] == {"name": "iris", "version": "1"}
    assert job["result"]["label"] == "setosa"

    waited = api.http.post("/jobs", json={"model": "iris", "features": SETOSA}, headers={"Prefer": "wait=10"})
    assert waited.status_code == 200
    assert waited.json()["result"]["label"] == "setosa"

    # The same numbers by position or by name are the same request for an Idempotency-Key.
    key = {"Idempotency-Key": f"iris-{job['id']}"}
    first = api.http.post("/jobs", json={"model": "iris", "features": SETOSA}, headers=key)
    again = api.http.post("/jobs", json={"model": "iris", "inputs": named(SETOSA)}, headers=key)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    other = api.http.post("/jobs", json={"model": "iris", "features": [6.0, 3.0, 4.8, 1.8]}, headers=key)
    assert other.status_code == 422


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict = response.json()
    assert body["status"] == status
    return body


@pytest.mark.parametrize("path", ["/jobs", "/predict"])
def test_bad_bodies_are_refused_naming_the_feature(api, path):
    post = api.http.post
    missing = {k: v for k, v in named(SETOSA).items() if k != "petal_width"}
    body = _problem(post(path, json={"model": "iris", "inputs": missing}), 422)
    assert [e["field"] for e in body["errors"]] == ["inputs.petal_width"]
    assert "missing feature" in body["detail"]
    assert "sepal_length, sepal_width" in body["detail"]

    extra = {**named(SETOSA), "petal_colour": 1.0}
    body = _problem(post(path, json={"model": "iris", "inputs": extra}), 422)
    assert [e["field"] for e in body["errors"]] == ["inputs.petal_colour"]
    assert "unknown feature" in body["detail"]

    body = _problem(post(path, json={"model": "iris", "features": SETOSA[:3]}), 422)
    assert [e["field"] for e in body["errors"]] == ["features"]
    assert "3 numbers, but iris:1 takes 4" in body["detail"]

    for raw in ('{"model": "iris", "features": [NaN, 3.5, 1.4, 0.2]}',
                '{"model": "iris", "features": [Infinity, 3.5, 1.4, 0.2]}',
                '{"model": "iris", "features": [1e39, 3.5, 1.4, 0.2]}',
                '{"model": "iris", "features": ["5.1", 3.5, 1.4, 0.2]}'):
        body = _problem(post(path, content=raw, headers={"Content-Type": "application/json"}), 422)
        assert body["errors"][0]["field"] == "features.0", raw

    both = {"model": "iris", "features": SETOSA, "inputs": named(SETOSA)}
    assert "not both" in _problem(post(path, json=both), 422)["detail"]
    body = _problem(post(path, json={"model": "iris", "features": SETOSA, "colour": "red"}), 422)
    assert body["errors"][0]["field"] == "colour"
    assert _problem(post(path, json={"features": SETOSA}), 422)["errors"][0]["field"] == "model"
    body = _problem(post(path, content=b"{not json", headers={"Content-Type": "application/json"}), 422)
    assert "not JSON" in body["detail"]

    assert "unknown model" in _problem(post(path, json={"model": "roses", "features": SETOSA}), 404)["detail"]
    body = _problem(post(path, json={"model": "digits", "features": SETOSA}), 415)
    assert "takes an image" in body["detail"]


def test_an_image_for_a_features_model_is_refused(api):
    body = _problem(api.submit(heldout_png(), model="iris"), 415)
    assert "takes features" in body["detail"]
    assert "application/json" in body["detail"]
    # The image routes are as they were.
    assert api.submit(heldout_png()).status_code == 202


def test_a_missing_artifact_is_trained_at_start(tmp_path, logdir):
    """The Iris service's fallback: the manifest alone, and the worker trains the model."""
    models = tmp_path / "models"
    (models / "iris" / "1").mkdir(parents=True)
    shutil.copy(ROOT / "models" / "iris" / "1" / "manifest.json", models / "iris" / "1")
    server = RedisServer(tmp_path)
    server.start()
    worker = api = None
    try:
        worker = Worker(server.url, logdir, model_dir=models)
        api = start_api(server.url, logdir, model_dir=models, default_model="iris")
        log = worker.log.read_text()
        assert "ARTIFACT MISSING" in log
        assert "TRAINED AT START" in log
        assert not (models / "iris" / "1" / "model.keras").exists(), "trained into memory only"
        (serving,) = api.ops.get("/readyz").json()["serving"]
        assert serving["models"] == ["iris:1"]
        response = api.http.post("/predict", json={"model": "iris", "features": SETOSA})
        assert response.status_code == 200, response.text
        assert response.json()["class_label"] == "setosa"
    finally:
        for process in (api, worker, server):
            if process is not None:
                process.stop()

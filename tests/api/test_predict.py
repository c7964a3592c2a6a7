"""Seed-compatible synchronous /predict and /predict/batch."""

from models.digits_data import render
from tests.utils.processes import start_api


def test_predict_returns_the_cifar_style_shape(api, worker, heldout):
    images, labels = heldout
    response = api.http.post("/predict", files={"file": ("d.png", render(images[11], size=77))})
    assert response.status_code == 200
    body = response.json()
    assert body["class_label"] == str(labels[11])
    assert len(body["probabilities"]) == 10
    assert abs(sum(body["probabilities"]) - 1) < 1e-3
    assert body["confidence"] == max(body["probabilities"])
    assert api.http.get(f"/jobs/{body['job_id']}").json()["status"] == "succeeded"


def test_predict_rejects_bad_uploads_like_jobs(api):
    assert api.http.post("/predict", files={"file": ("x", b"not an image")}).status_code == 415


def test_predict_times_out_with_504_and_the_job_id(private_stack, digit_png, logdir):
    server, _ = private_stack  # no worker serves this Redis
    api = start_api(server.url, logdir, predict_timeout_seconds=0.5)
    try:
        response = api.http.post("/predict", files={"file": ("d.png", digit_png)})
    finally:
        api.stop()
    assert response.status_code == 504
    assert response.headers["location"].startswith("/jobs/")
    assert "GET /jobs/" in response.json()["detail"]


def test_predict_batch_in_order_with_per_file_errors(api, worker, heldout):
    images, labels = heldout
    files = [("files", ("a.png", render(images[20], size=50))), ("files", ("b", b"junk")),
             ("files", ("c.png", render(images[21], size=60)))]
    predictions = api.http.post("/predict/batch", files=files).json()["predictions"]
    assert predictions[0]["class_label"] == str(labels[20])
    assert predictions[1]["status_code"] == 415
    assert predictions[2]["class_label"] == str(labels[21])

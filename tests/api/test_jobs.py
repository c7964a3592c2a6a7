"""POST /jobs and GET /jobs/{id} over real HTTP, with a real worker and the real model."""

import io

import numpy as np
from PIL import Image

from models.digits_data import render
from shared.settings import Settings
from tests.utils.jobs import make_job, waiting
from tests.utils.samples import heldout_png


def test_digits_end_to_end_get_the_right_labels(api, worker, heldout):
    images, labels = heldout
    rng = np.random.default_rng(7)
    picks = rng.choice(len(labels), size=30, replace=False)
    styles = [
        dict(size=64),
        dict(size=300, dark_on_light=False),
        dict(size=28, ink=(20, 40, 200)),
        dict(size=120, dark_on_light=False, ink=(250, 230, 90), image_format="JPEG"),
        dict(size=48, image_format="WEBP"),
    ]
    submitted = []
    for n, i in enumerate(picks):
        response = api.submit(render(images[i], **styles[n % len(styles)]))
        assert response.status_code == 202, response.text
        body = response.json()
        assert response.headers["location"] == f"/jobs/{body['id']}"
        assert body["status"] == "queued"
        submitted.append((body["id"], str(labels[i])))

    correct = 0
    for job_id, truth in submitted:
        job = api.wait_terminal(job_id)
        assert job["status"] == "succeeded", job
        assert job["model"] == {"name": "digits", "version": "1"}
        assert job["error"] is None
        assert job["created_at"] <= job["started_at"] <= job["finished_at"]
        result = job["result"]
        assert result["label"] == result["top_k"][0]["label"]
        assert len(result["top_k"]) == 5
        assert 0 <= result["score"] <= 1
        correct += result["label"] == truth
    # The model scores ~99% on held-out digits; 28 of 30 leaves room for one or two hard ones.
    assert correct >= 28, f"only {correct}/30 correct"


def test_named_model_and_version(api, worker, heldout):
    seven = int(np.flatnonzero(heldout[1] == 7)[0])
    for ref in ("digits", "digits:1"):
        response = api.submit(heldout_png(seven), model=ref)
        assert response.status_code == 202
        assert api.wait_terminal(response.json()["id"])["result"]["label"] == "7"


def test_unknown_model_is_404_and_lists_the_known_ones(api, digit_png):
    response = api.submit(digit_png, model="cifar")
    assert response.status_code == 404
    assert "digits:1" in response.json()["detail"]


def test_not_an_image_is_415(api):
    response = api.submit(b"%PDF-1.4 this is not a picture")
    assert response.status_code == 415
    assert "PNG" in response.json()["detail"]


def test_truncated_image_fails_invalid_image(api, worker, digit_png):
    """Its header is good, so it is queued; the worker, which decodes it
    (DECODE_IN_WORKER_MAX_BYTES), fails it with invalid_image (tests/api/test_raw_upload.py:
    the same image is 422 at submit where the API decodes)."""
    response = api.submit(digit_png[: len(digit_png) // 2])
    assert response.status_code == 202
    job = api.wait_terminal(response.json()["id"])
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "invalid_image", job
    assert "decoded" in job["error"]["message"]


def test_empty_file_is_422(api):
    response = api.submit(b"")
    assert response.status_code == 422


def test_missing_file_field_is_422(api):
    response = api.http.post("/jobs", data={"model": "digits"})
    assert response.status_code == 422


def test_oversize_upload_is_413_before_it_is_parsed(api):
    limit = Settings().max_upload_bytes
    response = api.submit(b"\0" * (limit + 100_000))
    assert response.status_code == 413
    assert str(limit) in response.json()["detail"]


def test_decompression_bomb_is_413(api):
    # 20000 x 20000 = 400 M pixels of one colour: a few hundred KB on the wire.
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, format="PNG")
    response = api.submit(buffer.getvalue())
    assert response.status_code == 413
    assert "pixels" in response.json()["detail"]


def test_unknown_job_is_404(api):
    response = api.http.get("/jobs/0123456789abcdef0123456789abcdef")
    assert response.status_code == 404
    assert "unknown" in response.json()["detail"]


def test_rejected_upload_queues_nothing(api, redis_server, store):
    client = redis_server.client()
    before = waiting(client)
    keys_before = len(list(client.scan_iter(store.keys.job("*"))))
    assert api.submit(b"garbage").status_code == 415
    assert waiting(client) == before
    assert len(list(client.scan_iter(store.keys.job("*")))) == keys_before


def test_poison_message_fails_that_job_only(api, worker, store, digit_png):
    """A message whose tensor is corrupt (not something the API would send) fails alone."""
    poison = make_job(store, queue=Settings().queue_name, payload="bm90IGEgdGVuc29y", owner=api.key_id)
    good = api.submit(digit_png).json()

    failed = api.wait_terminal(poison.id)
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "invalid_input"
    assert "bytes" in failed["error"]["message"]
    assert api.wait_terminal(good["id"])["status"] == "succeeded"
    assert worker.proc.poll() is None, "the worker must survive a poison message"

"""Confidence that means something, end to end: held-out digits and synthetic non-digits sent
over HTTP are flagged (`in_distribution: false`) at the rates the default model's manifest
records (models/calibrate.py measured them; the README states them)."""

import numpy as np

from models.digits_data import varied_renderings
from models.nondigits import KINDS, nondigits
from tests.utils.samples import DIGITS

TOLERANCE = 0.1  # 40 pictures of each: the shares measured here are coarse


def flagged_share(api, pictures: list[bytes]) -> tuple[float, list[dict]]:
    files = [("files", (f"{i}.png", data)) for i, data in enumerate(pictures)]
    response = api.http.post("/predict/batch", files=files, timeout=60)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    for p in predictions:
        assert isinstance(p["in_distribution"], bool), p
        assert 0 < p["calibrated_score"] <= 1
    return float(np.mean([not p["in_distribution"] for p in predictions])), predictions


def test_non_digits_are_flagged_at_the_recorded_rates(api, worker, heldout):
    measured = DIGITS.calibration.measured
    images, labels = heldout
    rng = np.random.default_rng(2024)  # renderings and non-digits other than calibrate.py's
    chosen = rng.choice(len(images), 40, replace=False)
    digits_flagged, predictions = flagged_share(api, [varied_renderings(images[i], rng) for i in chosen])
    assert abs(digits_flagged - measured.heldout_flagged) <= TOLERANCE, digits_flagged
    assert np.mean([p["class_label"] == str(labels[i]) for p, i in zip(predictions, chosen, strict=True)]) >= 0.9

    others = nondigits(40 // len(KINDS), seed=2024)
    others_flagged, _ = flagged_share(api, [data for _, data in others])
    assert abs(others_flagged - measured.synthetic_flagged) <= TOLERANCE, others_flagged


def test_a_job_result_carries_the_calibrated_score(api, worker, digit_png):
    job = api.http.post("/jobs", files={"file": ("7.png", digit_png)}, headers={"Prefer": "wait=30"}).json()
    if job["status"] != "succeeded":
        job = api.http.get(f"/jobs/{job['id']}", params={"wait": 30}).json()
    result = job["result"]
    assert result["label"] == "7"
    assert result["in_distribution"] is True
    assert 0 < result["calibrated_score"] <= 1

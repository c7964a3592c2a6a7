"""Temperature scaling and the out-of-distribution flag (shared/calibration.py), and how a
manifest's calibration reaches a result (worker.inference.batch.to_prediction)."""

import json

import numpy as np
import pytest
from pydantic import ValidationError

from shared.calibration import Calibration, OodRule, fit_temperature, judge, msp, nll, scaled, threshold_for
from shared.registry import Manifest
from tests.utils.samples import DIGITS
from worker.inference.batch import to_prediction

LABELS = [str(d) for d in range(10)]


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_temperature_one_changes_nothing_and_others_flatten_or_sharpen():
    p = np.array([[0.7, 0.2, 0.1], [0.98, 0.01, 0.01]])
    assert np.allclose(scaled(p, 1.0), p)
    assert np.all(msp(p, 2.0) < p.max(axis=1))
    assert np.all(msp(p, 0.5) > p.max(axis=1))
    assert np.allclose(scaled(p, 3.0).sum(axis=1), 1)
    assert np.array_equal(scaled(p, 3.0).argmax(axis=1), p.argmax(axis=1))  # the label never changes


def test_zero_probabilities_are_fine():
    p = np.array([[1.0, 0.0, 0.0]])
    assert np.isfinite(scaled(p, 2.0)).all()
    assert msp(p, 2.0)[0] > 0.99


def test_fit_temperature_recovers_an_overconfident_models_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (4000, 10))
    true = 2.5  # the labels follow softmax(logits / 2.5): the model's softmax(logits) is overconfident
    labels = np.array([rng.choice(10, p=row) for row in softmax(logits / true)])
    fitted = fit_temperature(softmax(logits), labels)
    assert abs(fitted - true) < 0.2, fitted
    assert nll(softmax(logits), labels, fitted) < nll(softmax(logits), labels, 1.0)


def test_threshold_flags_the_share_asked_for():
    scores = np.linspace(0, 1, 1001)
    threshold = threshold_for(scores, 0.05)
    assert abs((scores < threshold).mean() - 0.05) < 0.002


def test_judge_with_and_without_a_calibration():
    row = np.array([0.55, 0.45] + [0.0] * 8)
    assert judge(row, None) == (0.55, None)  # nothing measured: raw score, no verdict
    loose = Calibration(temperature=1.0, ood=OodRule(threshold=0.5))
    strict = Calibration(temperature=1.0, ood=OodRule(threshold=0.9))
    assert judge(row, loose) == (pytest.approx(0.55), True)
    assert judge(row, strict) == (pytest.approx(0.55), False)
    hot = Calibration(temperature=4.0, ood=OodRule(threshold=0.5))
    score, in_distribution = judge(row, hot)
    assert score < 0.55
    assert in_distribution is True


def test_results_carry_the_calibrated_score_and_the_flag():
    calibration = Calibration(temperature=2.0, ood=OodRule(threshold=0.6))
    confident = to_prediction(np.array([0.99] + [0.01 / 9] * 9), LABELS, calibration)
    unsure = to_prediction(np.array([0.3, 0.25, 0.2, 0.1, 0.05, 0.04, 0.03, 0.02, 0.005, 0.005]), LABELS, calibration)
    assert confident.label == "0"
    assert confident.in_distribution is True
    assert confident.calibrated_score is not None
    assert confident.calibrated_score < confident.score
    assert unsure.in_distribution is False
    plain = to_prediction(np.array([0.3, 0.7] + [0.0] * 8), LABELS)
    assert plain.calibrated_score == plain.score == 0.7
    assert plain.in_distribution is None


def test_manifests_load_with_or_without_a_calibration():
    raw = json.loads((DIGITS.directory / "manifest.json").read_text())
    assert DIGITS.calibration is not None  # the default model is calibrated
    assert 0 < DIGITS.calibration.ood.threshold < 1
    assert DIGITS.calibration.measured is not None
    assert Manifest.model_validate({k: v for k, v in raw.items() if k != "calibration"}).calibration is None
    with pytest.raises(ValidationError):
        Manifest.model_validate({**raw, "calibration": {"temperature": 0, "ood": {"threshold": 0.5}}})
    with pytest.raises(ValidationError):
        Manifest.model_validate({**raw, "calibration": {"temperature": 1, "ood": {"score": "x", "threshold": 0.5}}})

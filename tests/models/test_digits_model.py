"""The committed default model, judged on held-out digits drawn as users would draw them, and
on synthetic non-digits its calibration must flag."""

import json

import numpy as np

from models.digits_data import varied_renderings
from models.nondigits import nondigits
from shared.calibration import msp
from shared.preprocessing import preprocess
from tests.utils.samples import DIGITS
from worker.inference.model import LoadedModel


def test_heldout_accuracy_matches_the_manifest(heldout):
    images, labels = heldout
    manifest = DIGITS
    model = LoadedModel(manifest, max_batch_size=64)
    rng = np.random.default_rng(12345)  # other renderings than the training script's
    tensors = np.stack([preprocess(varied_renderings(img, rng), manifest, 10**8) for img in images])
    accuracy = float((model.predict(tensors).argmax(axis=1) == labels).mean())
    assert accuracy >= 0.97, accuracy
    recorded = json.loads((manifest.directory / "manifest.json").read_text())["metrics"]
    assert abs(accuracy - recorded["heldout_accuracy"]) < 0.02


def test_calibration_flags_what_the_manifest_states(heldout):
    """Other renderings of the held-out digits and other synthetic non-digits than
    models/calibrate.py measured: the shares flagged match the manifest's."""
    images, _ = heldout
    manifest = DIGITS
    calibration = manifest.calibration
    assert calibration is not None
    assert calibration.measured is not None
    model = LoadedModel(manifest, max_batch_size=64)

    def flagged(tensors: np.ndarray) -> np.ndarray:
        return msp(model.predict(tensors), calibration.temperature) < calibration.ood.threshold

    rng = np.random.default_rng(54321)
    digits = flagged(np.stack([preprocess(varied_renderings(img, rng), manifest, 10**8) for img in images]))
    assert digits.mean() <= calibration.measured.heldout_flagged + 0.03, digits.mean()
    others = nondigits(40, seed=54321)
    kinds = np.array([kind for kind, _ in others])
    synthetic = flagged(np.stack([preprocess(data, manifest, 10**8) for _, data in others]))
    assert abs(synthetic.mean() - calibration.measured.synthetic_flagged) < 0.05, synthetic.mean()
    for kind, recorded in calibration.measured.synthetic_flagged_by_kind.items():
        assert abs(synthetic[kinds == kind].mean() - recorded) <= 0.1, (kind, synthetic[kinds == kind].mean())

"""The committed default model, judged on held-out digits drawn as users would draw them."""

import json

import numpy as np

from models.digits_data import varied_renderings
from shared.preprocessing import preprocess
from tests.utils.samples import DIGITS
from worker.runtime import LoadedModel


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

"""Train the default model, models/digits/1, from scikit-learn's bundled digits.

    .venv/bin/python -m models.train_digits

Reproducible (fixed seeds, deterministic ops), no download. Every training image goes
through the service's own preprocessing, so training and serving see the same tensors.
Prints held-out accuracy and writes the artifact, its manifest and example pictures, then
calibrates it (models/calibrate.py: temperature and out-of-distribution threshold).

Outlier exposure: synthetic non-digits (models/nondigits.py, their own seed) are trained
towards the uniform distribution, so the model's top probability is low on pictures that
are not digits and its calibrated score can flag them.
"""

import json
from pathlib import Path

import numpy as np

from models import calibrate
from models.digits_data import SEED, fit_validation_split, render, split, varied_renderings
from models.nondigits import nondigits
from shared.preprocessing import preprocess
from shared.registry import Manifest

OUT = Path(__file__).resolve().parent / "digits" / "1"
RENDERINGS_PER_DIGIT = 6
NONDIGITS_PER_KIND = 600  # outlier exposure: 3,000 synthetic non-digits, targets uniform
NONDIGITS_SEED = SEED + 100  # calibrate.py fits and measures on other seeds
OUTLIER_WEIGHT = 1.0  # each non-digit's loss weight against a digit's
MANIFEST = {
    "name": "digits",
    "version": "1",
    "artifact": "model.keras",
    "input_shape": [8, 8, 1],
    "labels": [str(d) for d in range(10)],
    "preprocessing": {"color_mode": "L", "polarity": "auto", "crop": "ink", "scale": [0, 16]},
}


def tensors(images: np.ndarray, manifest: Manifest, rng: np.random.Generator, copies: int) -> np.ndarray:
    return np.stack(
        [preprocess(varied_renderings(img, rng), manifest, 10**8) for img in images for _ in range(copies)]
    )


def build_model():
    import keras

    return keras.Sequential(
        [
            keras.Input(shape=(8, 8, 1)),
            keras.layers.Rescaling(1 / 16),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Dropout(0.25),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dropout(0.4),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def main() -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(SEED)
    manifest = Manifest.model_validate({**MANIFEST, "directory": OUT})

    fit_x, val_x, fit_y, val_y = fit_validation_split()  # validation: calibration's, never fitted
    _, test_x, _, test_y = split()
    digits_x = tensors(fit_x, manifest, rng, RENDERINGS_PER_DIGIT)
    digits_y = np.eye(10, dtype=np.float32)[np.repeat(fit_y, RENDERINGS_PER_DIGIT)]
    others = np.stack([preprocess(data, manifest, 10**8) for _, data in nondigits(NONDIGITS_PER_KIND, NONDIGITS_SEED)])
    x = np.concatenate([digits_x, others])
    y = np.concatenate([digits_y, np.full((len(others), 10), 0.1, dtype=np.float32)])
    weights = np.concatenate([np.ones(len(digits_x)), np.full(len(others), OUTLIER_WEIGHT)]).astype(np.float32)
    validation = (tensors(val_x, manifest, np.random.default_rng(SEED + 2), 1), np.eye(10)[val_y])
    model = build_model()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["categorical_accuracy"])
    model.fit(x, y, sample_weight=weights, epochs=25, batch_size=128, validation_data=validation,
              verbose=2, shuffle=True)

    # Held-out digits, each drawn once at a random size/polarity/colour, never seen in training.
    heldout = tensors(test_x, manifest, np.random.default_rng(SEED + 1), 1)
    accuracy = float((model.predict(heldout, verbose=0).argmax(axis=1) == test_y).mean())
    print(f"held-out accuracy: {accuracy:.4f} on {len(test_y)} digits")

    OUT.mkdir(parents=True, exist_ok=True)
    model.save(OUT / "model.keras")
    MANIFEST["metrics"] = {"heldout_accuracy": round(accuracy, 4), "heldout_size": len(test_y)}
    (OUT / "manifest.json").write_text(json.dumps(MANIFEST, indent=2) + "\n")
    examples = OUT.parent / "examples"
    examples.mkdir(exist_ok=True)
    for label in range(10):
        first = int(np.flatnonzero(test_y == label)[0])
        (examples / f"{label}.png").write_bytes(render(test_x[first], size=96))
    calibrate.main()


if __name__ == "__main__":
    main()

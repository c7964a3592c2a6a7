"""Train the feature-vector example model, models/iris/1, from scikit-learn's bundled Iris
data (150 flowers, 4 measurements in cm; no download).

    .venv/bin/python -m models.train_iris

Reproducible (fixed seeds, deterministic ops). A small MLP that normalizes its own input
(a Normalization layer adapted on the training rows), so the service sends it the raw
measurements. Prints held-out accuracy and writes the artifact and its manifest.

The manifest names this module (`"train": "models.train_iris"`): a worker that finds the
artifact missing calls `train` at start instead of failing (worker/inference/runtime.py).
"""

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

log = logging.getLogger(__name__)
OUT = Path(__file__).resolve().parent / "iris" / "1"
SEED = 0
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]  # load_iris's order, in cm
LABELS = ["setosa", "versicolor", "virginica"]
HELDOUT_SHARE = 0.3
EPOCHS = 150
MANIFEST: dict[str, Any] = {
    "name": "iris",
    "version": "1",
    "artifact": "model.keras",
    "input": {"kind": "features", "names": FEATURES},
    "input_shape": [len(FEATURES)],
    "labels": LABELS,
    "train": "models.train_iris",
}


def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_x, heldout_x, train_y, heldout_y): float32 rows in FEATURES order, int labels."""
    iris = load_iris()
    assert list(iris.target_names) == LABELS
    x = iris.data.astype(np.float32)
    return train_test_split(x, iris.target, test_size=HELDOUT_SHARE, stratify=iris.target, random_state=SEED)


def train(deterministic: bool = False) -> tuple[Any, float, int]:
    """(the trained Keras model, its held-out accuracy, the held-out size). Seeded; with
    `deterministic`, TensorFlow's ops too (process-wide, so only the script asks for it)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    train_x, test_x, train_y, test_y = split()
    normalize = keras.layers.Normalization()
    normalize.adapt(train_x)
    model = keras.Sequential(
        [
            keras.Input(shape=(len(FEATURES),)),
            normalize,
            # Squashed: any finite float32 input, however far out, gives finite probabilities.
            keras.layers.Rescaling(1 / 3),
            keras.layers.Activation("tanh"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(len(LABELS), activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(train_x, train_y, epochs=EPOCHS, batch_size=16, verbose=0, shuffle=True)
    accuracy = float((model.predict(test_x, verbose=0).argmax(axis=1) == test_y).mean())
    return model, accuracy, len(test_y)


def main() -> None:
    model, accuracy, size = train(deterministic=True)
    print(f"held-out accuracy: {accuracy:.4f} on {size} flowers")
    OUT.mkdir(parents=True, exist_ok=True)
    model.save(OUT / "model.keras")
    manifest = {**MANIFEST, "metrics": {"heldout_accuracy": round(accuracy, 4), "heldout_size": size}}
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()

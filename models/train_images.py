"""Train an image classifier from labelled pictures: what a training job runs
(worker/training/app.py), on tensors already preprocessed by the base manifest's preprocessing
(shared/preprocessing.py), so training sees what serving sees.

Fine-tuning continues the current version's own model (same labels, same input) at a low
learning rate; from scratch, a small CNN sized to the input. Seeded. TensorFlow is imported
inside the functions, in the training worker's process only.
"""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SEED = 0
HELDOUT_SHARE = 0.2  # of each label's images, never trained on
BATCH_SIZE = 32
LEARNING_RATE = 1e-3
FINE_TUNE_LEARNING_RATE = 1e-4


class TimeLimit(Exception):
    """Training ran past its deadline."""


def split(labels: np.ndarray, share: float = HELDOUT_SHARE, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices), stratified: `share` of each label's images (at least
    one, and at least one left to train on) held out, chosen by a seeded shuffle."""
    rng = np.random.default_rng(seed)
    train: list[int] = []
    heldout: list[int] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = min(len(members) - 1, max(1, round(len(members) * share)))
        heldout.extend(int(i) for i in members[:count])
        train.extend(int(i) for i in members[count:])
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(heldout, dtype=np.int64))


def build(input_shape: tuple[int, ...], classes: int, scale: tuple[float, float]) -> Any:
    """A small CNN for `input_shape` (height, width, channels) whose input spans `scale`."""
    import keras

    low, high = scale
    layers: list[Any] = [keras.Input(shape=input_shape),
                         keras.layers.Rescaling(1 / (high - low), offset=-low / (high - low))]
    side, filters = min(input_shape[:2]), 32
    while side > 16:  # pool large inputs down to a small map first
        layers += [keras.layers.Conv2D(filters, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D()]
        side, filters = side // 2, min(filters * 2, 128)
    layers += [keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
               keras.layers.Conv2D(64, 3, padding="same", activation="relu")]
    if side >= 4:
        layers.append(keras.layers.MaxPooling2D())
    layers += [keras.layers.Flatten(), keras.layers.Dropout(0.25), keras.layers.Dense(128, activation="relu"),
               keras.layers.Dropout(0.4), keras.layers.Dense(classes, activation="softmax")]
    return keras.Sequential(layers)


def train(x: np.ndarray, y: np.ndarray, classes: int, input_shape: tuple[int, ...], scale: tuple[float, float],
          base: Path | None, epochs: int, on_epoch: Callable[[int, float, float], None], deadline: float) -> Any:
    """The trained model: `base`'s model.keras fine-tuned, or a new one (`base` None).
    `on_epoch(epoch, loss, accuracy)` after every epoch; TimeLimit once time.monotonic()
    passes `deadline` (checked after every batch)."""
    import keras

    keras.utils.set_random_seed(SEED)
    if base is not None:
        model = keras.models.load_model(base, safe_mode=True)  # a version folder is data: no code runs
        rate = FINE_TUNE_LEARNING_RATE
    else:
        model = build(input_shape, classes, scale)
        rate = LEARNING_RATE
    model.compile(optimizer=keras.optimizers.Adam(rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    class Report(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if time.monotonic() > deadline:
                raise TimeLimit()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            on_epoch(epoch + 1, float(logs.get("loss", float("nan"))), float(logs.get("accuracy", float("nan"))))

    model.fit(x, y, epochs=epochs, batch_size=BATCH_SIZE, shuffle=True, verbose=0, callbacks=[Report()])
    return model


def accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    """Share of `x` the model labels as `y`."""
    predicted = model.predict(x, batch_size=256, verbose=0).argmax(axis=1)
    return float((predicted == y).mean())

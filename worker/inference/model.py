"""One model version in TensorFlow: loaded once, every batch bucket warmed, predict.

Batches are zero-padded up to the next power-of-two bucket so the compiled function only
ever sees a handful of shapes, all traced at start-up: TensorFlow never retraces while
serving.
"""

import importlib
import logging
import time

import numpy as np

from shared.codec import decode_features, decode_pixels
from shared.preprocessing import scale
from shared.registry import Manifest

log = logging.getLogger(__name__)


def configure_devices() -> list[str]:
    """Must run before TensorFlow touches a GPU: grow GPU memory instead of grabbing it all."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    return [gpu.name for gpu in gpus]


def buckets(max_batch_size: int) -> list[int]:
    sizes = [1]
    while sizes[-1] < max_batch_size:
        sizes.append(min(sizes[-1] * 2, max_batch_size))
    return sizes


def load_keras_model(manifest: Manifest):
    """The manifest's artifact; when it is missing and the manifest names a `train` module
    (a model shipped with its data, e.g. models.train_iris), that module trains it now,
    into memory only (the model folder may be read-only, and several workers may start at
    once): every start trains again until the artifact is restored."""
    import keras

    path = manifest.contained_artifact()  # ValueError: it resolves outside its version folder
    if path.exists() or not manifest.train:
        # safe_mode=True said, not assumed from Keras' default: a version folder is data, and a
        # Lambda layer's pickled bytecode in it must never run in the worker.
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    log.warning("!" * 72)
    log.warning("%s: ARTIFACT MISSING (%s); TRAINING IT AT START FROM ITS BUNDLED DATA (%s.train)",
                manifest.key, path, manifest.train)
    started = time.perf_counter()
    model, accuracy, size = importlib.import_module(manifest.train).train()
    log.warning("%s: TRAINED AT START in %.1fs: held-out accuracy %.4f on %d (the committed artifact's: %s); "
                "serving it from memory, nothing written; restore %s to skip this",
                manifest.key, time.perf_counter() - started, accuracy, size,
                manifest.metrics.get("heldout_accuracy", "unknown"), path)
    log.warning("!" * 72)
    return model


class LoadedModel:
    def __init__(self, manifest: Manifest, max_batch_size: int):
        import tensorflow as tf

        self.manifest = manifest
        self.buckets = buckets(max_batch_size)
        model = load_keras_model(manifest)
        if tuple(model.input_shape[1:]) != tuple(manifest.input_shape):
            raise ValueError(
                f"{manifest.key}: model input {model.input_shape[1:]} != manifest input_shape "
                f"{manifest.input_shape}"
            )
        fn = tf.function(lambda x: model(x, training=False))
        # One concrete function per bucket, traced now: serving calls them directly, so a
        # retrace at run time is impossible (a wrong shape raises instead).
        self._by_size = {
            size: fn.get_concrete_function(tf.TensorSpec((size, *manifest.input_shape), tf.float32))
            for size in self.buckets
        }
        for size, concrete in self._by_size.items():
            concrete(tf.zeros((size, *manifest.input_shape)))
        self.traces = fn.experimental_get_tracing_count()
        self.last_used = time.monotonic()  # set by each batch (worker.inference.batch): which version to unload first

    def decode(self, payload: str) -> np.ndarray:
        """A job's stored input (shared.codec) as one row of the model's input, unscaled;
        ValueError when it does not fit the model."""
        if self.manifest.input.kind == "features":
            return decode_features(payload, self.manifest.input_shape)
        return decode_pixels(payload, self.manifest.input_shape)

    def scale(self, rows: np.ndarray) -> np.ndarray:
        """Decoded rows -> the model's float32 input: pixels scaled to the manifest's range;
        features as they are (the model normalizes them itself)."""
        if self.manifest.input.kind == "features":
            return rows.astype(np.float32)
        return scale(rows, self.manifest.preprocessing)

    @property
    def traced_sizes(self) -> list[int]:
        """The batch sizes with a traced function: serving never calls any other."""
        return sorted(self._by_size)

    def bucket_for(self, n: int) -> int:
        return next(size for size in self.buckets if size >= n)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for each row of `batch` (any length; chunked by the largest bucket)."""
        outputs = []
        largest = self.buckets[-1]
        for start in range(0, len(batch), largest):
            chunk = batch[start : start + largest]
            size = self.bucket_for(len(chunk))
            if size != len(chunk):
                chunk = np.concatenate(
                    [chunk, np.zeros((size - len(chunk), *chunk.shape[1:]), dtype=chunk.dtype)]
                )
            outputs.append(np.asarray(self._by_size[size](chunk))[: len(batch) - start])
        return np.concatenate(outputs)[: len(batch)]

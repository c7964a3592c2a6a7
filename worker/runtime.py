"""TensorFlow side of the worker: load each model once, warm every batch bucket, predict.

Batches are zero-padded up to the next power-of-two bucket so the compiled function only
ever sees a handful of shapes, all traced at start-up: TensorFlow never retraces while
serving.
"""

import logging
import os
import time

import numpy as np

from shared.registry import Manifest, Registry

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


class LoadedModel:
    def __init__(self, manifest: Manifest, max_batch_size: int):
        import keras
        import tensorflow as tf

        self.manifest = manifest
        self.buckets = buckets(max_batch_size)
        model = keras.saving.load_model(manifest.artifact_path, compile=False)
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


class Runtime:
    """Every model in the registry, loaded in this process. A model that fails to load is
    recorded with its error (`failed`) and the others still serve."""

    def __init__(self, registry: Registry, max_batch_size: int):
        self.pid = os.getpid()
        self.devices = configure_devices()
        self.models: dict[str, LoadedModel] = {}
        self.failed: dict[str, str] = {}
        self.load_seconds: dict[str, float] = {}
        for key, manifest in registry.manifests.items():
            started = time.perf_counter()
            try:
                self.models[key] = LoadedModel(manifest, max_batch_size)
            except Exception as exc:  # a bad artifact must not take the other models down
                log.exception("could not load %s; its jobs fail with model_unavailable", key)
                self.failed[key] = f"{type(exc).__name__}: {exc}"
                continue
            self.load_seconds[key] = time.perf_counter() - started
            log.info(
                "loaded %s in %.2fs, buckets %s, devices %s",
                key,
                self.load_seconds[key],
                self.models[key].buckets,
                self.devices or ["CPU"],
            )

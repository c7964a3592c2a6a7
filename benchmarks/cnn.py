"""A model where batching matters on a CPU: a thin, deep residual CNN on 64x64x3 input
(a stride-4 stem, then 3 x BLOCKS residual blocks at 16x16, 8x8 and 4x4 with 16, 32 and 64 channels),
random weights (seeded; nothing is downloaded or trained), saved as a model folder the
service can serve.

At batch 1 its hundreds of small layers leave the CPU mostly idle: per-op overhead, and too little
work per op to spread over the cores. A batch of 32 gives every op 32 times the work for the
same overhead, so the time per image drops several fold. A CNN with more work per op is
compute-bound from batch 1 and gains little (this one with a stride-1 stem, convolving at
64x64: batch 32 no faster per image than batch 1). Measured with `worker.inference.model.LoadedModel.predict`:
`python -m benchmarks.cnn`.
"""

import json
import time
from pathlib import Path

NAME = "cnn"
SIDE = 64
WIDTHS = (16, 32, 64)  # channels per stage; each stage after the first halves the resolution
# Residual blocks (two 3x3 convolutions each) per stage. Deep enough that a job's model time at
# batch 1 (~15 ms here) outweighs the rest of its cost in the service (~3 ms of the 2 cores),
# so that end to end, not only offline, shows what batching buys (4 blocks: ~3 ms, on/off 2x).
BLOCKS = 28
STEM_STRIDES = 4  # the first convolution takes 64x64 down to 16x16
CLASSES = 10


def build(side: int = SIDE, widths: tuple[int, ...] = WIDTHS, blocks: int = BLOCKS, stem_strides: int = STEM_STRIDES,
          classes: int = CLASSES):
    import keras
    from keras import layers

    def conv_bn(x, filters: int, kernel: int = 3, strides: int = 1, relu: bool = True):
        x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x) if relu else x

    inputs = keras.Input((side, side, 3))
    x = conv_bn(inputs, widths[0], strides=stem_strides)
    for stage, width in enumerate(widths):
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            shortcut = x if strides == 1 and x.shape[-1] == width else conv_bn(x, width, 1, strides, relu=False)
            y = conv_bn(x, width, strides=strides)
            y = conv_bn(y, width, relu=False)
            x = layers.ReLU()(layers.Add()([y, shortcut]))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=NAME)


def write_model_dir(root: Path, **shape) -> Path:
    import keras

    folder = root / NAME / "1"
    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    model = build(**shape)
    model.save(folder / "model.keras")
    side = model.input_shape[1]
    (folder / "manifest.json").write_text(json.dumps({
        "name": NAME, "version": "1", "input_shape": [side, side, 3],
        "labels": [f"class_{i}" for i in range(model.output_shape[-1])],
        "preprocessing": {"color_mode": "RGB", "scale": [-1, 1]},
    }))
    return root


def per_image_seconds(model, size: int, seconds: float) -> float:
    import numpy as np

    batch = np.random.default_rng(0).uniform(-1, 1, (size, *model.manifest.input_shape)).astype(np.float32)
    model.predict(batch)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.predict(batch)
        runs += 1
    return (time.perf_counter() - started) / (runs * size)


def main() -> None:
    import os
    import tempfile

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from shared.registry import Registry
    from worker.inference.model import LoadedModel

    with tempfile.TemporaryDirectory() as tmp:
        model = LoadedModel(Registry(write_model_dir(Path(tmp)), NAME).resolve(None), 32)
        one, many = per_image_seconds(model, 1, 3.0), per_image_seconds(model, 32, 3.0)
    print(f"{NAME} {SIDE}x{SIDE}x3: batch 1 {one * 1000:.2f} ms/image, batch 32 {many * 1000:.2f} ms/image, "
          f"ratio {many / one:.2f} (batching matters when <= 0.25)")


if __name__ == "__main__":
    main()

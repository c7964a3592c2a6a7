"""A compute-bound model for the benchmark: Keras MobileNetV2 at 224x224, random weights
(weights=None: nothing is downloaded), saved as a model folder the service can serve."""

import json
from pathlib import Path


def write_model_dir(root: Path) -> Path:
    import keras

    folder = root / "mobilenet" / "1"
    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(224, 224, 3), weights=None, classes=1000)
    model.save(folder / "model.keras")
    (folder / "manifest.json").write_text(json.dumps({
        "name": "mobilenet", "version": "1", "input_shape": [224, 224, 3],
        "labels": [f"class_{i}" for i in range(1000)],
        "preprocessing": {"color_mode": "RGB", "scale": [-1, 1]},
    }))
    return root

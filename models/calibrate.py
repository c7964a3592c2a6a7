"""Calibrate the digits model: fit a temperature and an out-of-distribution threshold on the
validation digits (never trained on), measure what they flag, write them into its manifest.

    .venv/bin/python -m models.calibrate [models/digits/1]

`make train` runs it after training. Deterministic (seeded renderings, no download); prints
the figures the README states:
- temperature: minimises the validation digits' negative log-likelihood;
- threshold: the calibrated top probability (MSP) under which FLAGGED_DIGITS of the
  validation digits fall (no non-digit is used to choose it);
- measured: the share flagged among the 360 held-out digits (each drawn once, as the
  training script draws them for its accuracy) and among synthetic non-digits of every kind
  (models/nondigits.py, a seed of their own: not those trained on).
"""

import json
import sys
from pathlib import Path

import numpy as np

from models.digits_data import SEED, fit_validation_split, split, varied_renderings
from models.nondigits import KINDS, nondigits
from shared.calibration import Calibration, Measured, OodRule, fit_temperature, msp, threshold_for
from shared.preprocessing import preprocess
from shared.registry import Manifest

DEFAULT = Path(__file__).resolve().parent / "digits" / "1"
VALIDATION_RENDERINGS = 5  # each validation digit drawn this many ways
FLAGGED_DIGITS = 0.02  # share of validation digits under the threshold
REPORT_PER_KIND = 100  # synthetic non-digits of each kind measured
REPORT_SEED = SEED + 300  # the training script's non-digits: SEED + 100


def _tensors(images: np.ndarray, manifest: Manifest, seed: int, copies: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([preprocess(varied_renderings(img, rng), manifest, 10**8) for img in images for _ in range(copies)])


def calibrate(directory: Path) -> tuple[Calibration, float]:
    """The calibration of the model in `directory`, and its held-out accuracy."""
    import keras

    raw = json.loads((directory / "manifest.json").read_text())
    manifest = Manifest.model_validate({**raw, "directory": directory})
    model = keras.saving.load_model(manifest.contained_artifact(), compile=False, safe_mode=True)

    def probabilities(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(x, batch_size=256, verbose=0), dtype=np.float64)

    _, val_x, _, val_y = fit_validation_split()
    validation = probabilities(_tensors(val_x, manifest, SEED + 2, VALIDATION_RENDERINGS))
    temperature = fit_temperature(validation, np.repeat(val_y, VALIDATION_RENDERINGS))
    threshold = threshold_for(msp(validation, temperature), FLAGGED_DIGITS)

    _, test_x, _, test_y = split()
    heldout = probabilities(_tensors(test_x, manifest, SEED + 1, 1))  # as train_digits draws them
    accuracy = float((heldout.argmax(axis=1) == test_y).mean())
    synthetic = nondigits(REPORT_PER_KIND, REPORT_SEED)
    kinds = np.array([kind for kind, _ in synthetic])
    others = probabilities(np.stack([preprocess(data, manifest, 10**8) for _, data in synthetic]))
    flagged = msp(others, temperature) < threshold
    measured = Measured(
        heldout_flagged=round(float((msp(heldout, temperature) < threshold).mean()), 4),
        heldout_size=len(test_y),
        synthetic_flagged=round(float(flagged.mean()), 4),
        synthetic_size=len(synthetic),
        synthetic_flagged_by_kind={kind: round(float(flagged[kinds == kind].mean()), 4) for kind in KINDS},
    )
    calibration = Calibration(
        temperature=round(temperature, 4),
        ood=OodRule(score="msp", threshold=round(threshold, 6)),
        fitted_on=(f"{len(val_y)} validation digits (split from the training digits, never trained on), "
                   f"{VALIDATION_RENDERINGS} renderings each; threshold flags {FLAGGED_DIGITS:.0%} of them"),
        measured=measured,
    )
    return calibration, accuracy


def main(directory: Path = DEFAULT) -> None:
    calibration, accuracy = calibrate(directory)
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["calibration"] = calibration.model_dump(mode="json")
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    m = calibration.measured
    assert m is not None
    print(f"held-out accuracy {accuracy:.4f}; temperature {calibration.temperature}; "
          f"MSP threshold {calibration.ood.threshold}")
    print(f"flagged: held-out digits {m.heldout_flagged:.2%} of {m.heldout_size}; "
          f"synthetic non-digits {m.synthetic_flagged:.2%} of {m.synthetic_size} "
          + ", ".join(f"{kind} {share:.0%}" for kind, share in m.synthetic_flagged_by_kind.items()))


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else DEFAULT)

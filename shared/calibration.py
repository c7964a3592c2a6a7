"""Confidence that means something: temperature scaling and an out-of-distribution flag.

A manifest may carry a `calibration` measured on held-out data (`models/calibrate.py` writes
the default model's). The worker turns each output row of probabilities into a calibrated
score, the maximum of softmax(log(p) / T), and flags the input as out of distribution when
that score falls below the manifest's threshold. Pure NumPy: the API, the worker and the
training scripts share it, none of them needs TensorFlow for it.
"""

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

EPSILON = 1e-12  # log(0) guard: a softmax output of exactly 0 is treated as 1e-12


class OodRule(BaseModel):
    # "msp": the maximum (temperature-scaled) softmax probability; below `threshold`, the
    # input is flagged as out of distribution.
    score: Literal["msp"] = "msp"
    threshold: float = Field(ge=0, le=1)


class Measured(BaseModel):
    """What the calibration was measured to do, on data it was not fitted on."""

    heldout_flagged: float  # share of held-out in-distribution inputs flagged
    heldout_size: int
    synthetic_flagged: float  # share of synthetic out-of-distribution inputs flagged
    synthetic_size: int
    synthetic_flagged_by_kind: dict[str, float] = {}


class Calibration(BaseModel):
    method: Literal["temperature"] = "temperature"
    temperature: float = Field(gt=0)
    ood: OodRule
    fitted_on: str = ""  # which data the temperature and threshold were fitted on
    measured: Measured | None = None


def log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probabilities, dtype=np.float64), EPSILON, 1.0))


def scaled(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(p) / T) row by row: the log-probabilities stand in for the logits (they
    differ by a constant per row, which softmax ignores)."""
    logits = log_probabilities(probabilities) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=-1, keepdims=True)


def msp(probabilities: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """The maximum softmax probability after temperature scaling, one per row."""
    return scaled(probabilities, temperature).max(axis=-1)


def nll(probabilities: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the true labels after temperature scaling."""
    p = scaled(probabilities, temperature)
    return float(-np.log(np.clip(p[np.arange(len(labels)), labels], EPSILON, 1.0)).mean())


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray, low: float = 0.05, high: float = 20.0) -> float:
    """The temperature minimising the NLL of `labels` (golden-section search on log T; the
    NLL is convex in 1/T)."""
    a, b = np.log(low), np.log(high)
    ratio = (np.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    for _ in range(80):
        if nll(probabilities, labels, float(np.exp(c))) < nll(probabilities, labels, float(np.exp(d))):
            b = d
        else:
            a = c
        c, d = b - ratio * (b - a), a + ratio * (b - a)
    return float(np.exp((a + b) / 2))


def threshold_for(scores: np.ndarray, flagged_share: float) -> float:
    """The score under which `flagged_share` of these in-distribution scores fall."""
    return float(np.quantile(np.asarray(scores, dtype=np.float64), flagged_share))


def judge(probabilities: np.ndarray, calibration: Calibration | None) -> tuple[float, bool | None]:
    """One output row -> (calibrated score, in distribution). Without a calibration the
    score is the raw top probability and the flag is None: nothing was measured."""
    if calibration is None:
        return float(np.max(probabilities)), None
    score = float(msp(np.asarray(probabilities)[None], calibration.temperature)[0])
    return score, score >= calibration.ood.threshold

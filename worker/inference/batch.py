"""One flushed batch of queued jobs -> one model call per model -> one outcome per job.

Every job that is still wanted ends in a terminal state: a job whose input cannot be
decoded, or that makes the model fail, fails alone while the rest of the batch succeeds.
"""

import logging
import os
import signal
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from shared.calibration import Calibration, judge
from shared.codec import quantize, stored_image
from shared.jobstore import JobStore
from shared.preprocessing import ImageTooLarge, InvalidImage, pixels_of
from shared.schemas import (
    FULL_PROBABILITIES_MAX,
    LANES,
    ErrorCode,
    JobError,
    LabelScore,
    Prediction,
)
from worker.inference import metrics
from worker.inference.model import LoadedModel
from worker.inference.runtime import LoadedModels, ModelUnavailable

log = logging.getLogger(__name__)
TOP_K = 5


@dataclass
class Item:
    """One task message: it names the job; the input comes from the job's record (start)."""

    job_id: str
    model_key: str
    submitted_at: float | None = None
    payload: str | None = None  # the input, in messages queued before it moved to the record
    lane: str = "normal"  # the lane it waited in (its message's properties: shared/broker/fair.py)


def parse(args: tuple, properties: dict | None = None) -> Item | None:
    if len(args) == 4:  # [id, model, input, submitted_at]: queued before an upgrade
        args = (args[0], args[1], args[3], args[2])
    try:
        item = Item(*args)
        if isinstance(item.job_id, str) and isinstance(item.model_key, str):
            lane = (properties or {}).get("qi_lane")
            if lane in LANES:  # bounded label values: only the lanes
                item.lane = str(lane)
            return item
    except (TypeError, ValueError):
        pass
    log.error("dropping malformed message with args %.200r", args)
    return None


def to_prediction(probabilities: np.ndarray, labels: list[str], calibration: Calibration | None = None) -> Prediction:
    order = np.argsort(probabilities)[::-1][: min(TOP_K, len(labels))]
    top = [LabelScore(label=labels[i], score=round(float(probabilities[i]), 6)) for i in order]
    full = [round(float(p), 6) for p in probabilities] if len(labels) <= FULL_PROBABILITIES_MAX else None
    calibrated, in_distribution = judge(probabilities, calibration)  # the manifest's, when it has one
    return Prediction(label=top[0].label, score=top[0].score, top_k=top, probabilities=full,
                      calibrated_score=round(calibrated, 6), in_distribution=in_distribution)


def _predict_each(model: LoadedModel, items: list[tuple[str, np.ndarray]]) -> dict:
    """Fallback after a batch failed: find the job(s) responsible, run the rest."""
    outcomes: dict[str, Prediction | JobError] = {}
    for job_id, pixels in items:
        try:
            probabilities = model.predict(model.scale(pixels[None]))[0]
            outcomes[job_id] = to_prediction(probabilities, model.manifest.labels, model.manifest.calibration)
        except Exception as exc:  # any model error fails this job only
            log.exception("job %s failed in the model", job_id)
            outcomes[job_id] = JobError(code=ErrorCode.inference_error, message=f"model failed: {exc}")
    return outcomes


def _load_on_demand(models: dict[str, LoadedModel], key: str, failed: dict[str, str],
                    unavailable: dict[str, str]) -> LoadedModel | None:
    """A version that is not loaded: loaded now when `models` can (worker.inference.runtime.LoadedModels:
    a version on disk that was unloaded, or is not yet seen), so a job queued for a version
    runs on it; else None, with why in `unavailable`."""
    if isinstance(models, LoadedModels):
        try:
            return models.load(key)
        except ModelUnavailable as exc:
            unavailable[key] = str(exc)
            return None
    why = failed.get(key)
    unavailable[key] = f"{key} failed to load: {why}" if why else f"no worker serves {key}"
    return None


# Test-only (tests/worker/test_webhook_once.py): the worker SIGKILLs itself right after the
# finish script returns, to show that the jobs' webhook deliveries were queued by that script.
KILL_AFTER_FINISH = os.environ.get("QI_TEST_KILL_AFTER_FINISH") == "1"


class Ran(NamedTuple):
    """What a batch did: the outcome of each job it ran, and the jobs it failed without
    running them (deadline passed: expired; lost too often: worker_lost). Any other job of the
    batch was skipped: cancelled, gone, finished, or running under another worker's live lease
    (a redelivered message while that worker lives)."""

    outcomes: dict[str, Prediction | JobError]
    ended: dict[str, ErrorCode]


def _row(model: LoadedModel, payload: str, max_pixels: int) -> np.ndarray:
    """A job's stored input as one row of the model's input, unscaled: an image stored as
    sent is decoded and preprocessed here (InvalidImage, ImageTooLarge), anything else is
    the model's to decode (ValueError)."""
    image = stored_image(payload)
    if image is None:
        return model.decode(payload)
    if model.manifest.input.kind != "image":
        raise ValueError(f"model {model.manifest.key} takes features, not an image")
    return quantize(pixels_of(image, model.manifest, max_pixels))


def run_batch(items: list[Item], store: JobStore, models: dict[str, LoadedModel], *, run: str | None = None,
              lease_seconds: float = 60, max_runs: int = 3, failed: dict[str, str] | None = None,
              max_pixels: int = 16_000_000) -> Ran:
    """Run the jobs that are still queued (or whose lease ended: their worker was lost),
    leased to `run`. Their webhook deliveries are queued by the start and finish scripts
    themselves (with the store's hooks: shared.jobstore.ops.base).
    `failed`: models that failed to load here, with why (their jobs fail at once)."""
    run = run or uuid.uuid4().hex
    unique = list({item.job_id: item for item in items}.values())
    started = store.start([item.job_id for item in unique], run, lease_seconds, max_runs)
    ended = {item.job_id: s.ended for item, s in zip(unique, started, strict=True) if s.ended}
    now = time.time()
    metrics.BATCH_SIZE.observe(len(unique))
    for item in unique:
        if item.submitted_at:
            metrics.QUEUE_WAIT.labels(item.lane).observe(max(0.0, now - item.submitted_at))
    outcomes: dict[str, Prediction | JobError] = {}
    by_model: dict[str, list[tuple[str, np.ndarray]]] = defaultdict(list)
    chosen: dict[str, LoadedModel] = {}  # the version each model key runs on in this batch
    unavailable: dict[str, str] = {}  # model key -> why its jobs fail with model_unavailable
    for item, state in zip(unique, started, strict=True):
        if not state.runs:
            log.info("skipping job %s (%s)", item.job_id, state.ended or state.before or "gone")
            continue
        model = chosen.get(item.model_key) or models.get(item.model_key)
        if model is None and item.model_key not in unavailable:
            model = _load_on_demand(models, item.model_key, failed or {}, unavailable)
        if model is None:
            outcomes[item.job_id] = JobError(code=ErrorCode.model_unavailable, message=unavailable[item.model_key])
            continue
        chosen[item.model_key] = model
        model.last_used = time.monotonic()  # the runtime unloads the least recently used version first
        try:
            pixels = _row(model, state.input or item.payload or "", max_pixels)
        except (InvalidImage, ImageTooLarge) as exc:  # a good header, pixels that do not decode
            outcomes[item.job_id] = JobError(code=ErrorCode.invalid_image, message=str(exc))
            continue
        except ValueError as exc:
            outcomes[item.job_id] = JobError(code=ErrorCode.invalid_input, message=str(exc))
            continue
        by_model[item.model_key].append((item.job_id, pixels))

    for key, jobs in by_model.items():
        model = chosen[key]
        try:
            batch = model.scale(np.stack([pixels for _, pixels in jobs]))
            with metrics.INFERENCE.labels(key).time():
                probabilities = model.predict(batch)
        except Exception:  # find the job(s) responsible below; the others still succeed
            log.exception("batch of %d for %s failed; retrying one by one", len(jobs), key)
            outcomes.update(_predict_each(model, jobs))
            continue
        for (job_id, _), row in zip(jobs, probabilities, strict=True):
            outcomes[job_id] = to_prediction(row, model.manifest.labels, model.manifest.calibration)

    store.finish(outcomes, run)
    if KILL_AFTER_FINISH:
        os.kill(os.getpid(), signal.SIGKILL)
    for item in unique:
        if item.job_id in outcomes:
            outcome = outcomes[item.job_id]
            kind = "succeeded" if isinstance(outcome, Prediction) else outcome.code
            metrics.JOBS.labels(item.model_key, kind).inc()
    return Ran(outcomes, ended)

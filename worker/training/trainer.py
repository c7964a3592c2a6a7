"""One training job's run, on the training worker's thread: the archive read and
preprocessed, the model trained (models.train_images, TensorFlow imported there), the
version written to MODEL_DIR atomically, announced and, if it earns it, made the default.
Progress goes on the job and to Flower after every epoch (see worker.training.app)."""

import base64
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from celery import Task
from redis.exceptions import RedisError

from shared.archive import ArchiveRefused, Limits, read_archive
from shared.catalog import Catalog
from shared.jobstore import JobStore
from shared.preprocessing import InvalidImage, preprocess
from shared.redisconn import target
from shared.registry import Manifest, Registry, version_order
from shared.schemas import TrainingProgress, TrainingResult
from shared.settings import get_settings
from worker.training.staging import STAGING

log = logging.getLogger(__name__)
settings = get_settings()


def _artifact_inside(manifest: Manifest) -> bool:
    """Whether `manifest`'s artifact is a file inside its version folder (fine-tuning never
    reads a file a manifest points at elsewhere)."""
    try:
        return manifest.contained_artifact().is_file()
    except ValueError:
        return False


class TrainingFailed(Exception):
    """Why a training job failed (its message goes on the job)."""


class Training:
    """One training job's run."""

    def __init__(self, jobs: JobStore, job_id: str, run: str, task: Task | None):
        self.jobs, self.job_id, self.run_token, self.task = jobs, job_id, run, task
        self.catalog = Catalog.connect(target(settings), settings.redis_timeout_seconds)

    def report(self, progress: TrainingProgress) -> None:
        """Record progress (every epoch, and before the version is written). A run that no
        longer holds the job (cancelled, or its lease ended and another run took it) stops:
        it must not write a version beside the run that now owns the job."""
        try:
            held = self.jobs.progress(self.job_id, self.run_token, progress)
        except RedisError as exc:  # progress is news, not state: training goes on
            log.warning("cannot record the progress of training job %s: %s", self.job_id, exc)
            return
        if not held:
            raise TrainingFailed("this run no longer holds the job (cancelled, or its lease ended); it stopped")
        if self.task is not None and self.task.request.id:
            try:
                self.task.send_event("task-progress", job_id=self.job_id, **progress.model_dump())
            except Exception as exc:  # events are best effort
                log.warning("cannot send a progress event: %s", exc)

    def run(self, job_input: str) -> TrainingResult:
        from models import train_images  # TensorFlow: imported here, in the training worker only

        try:
            request = json.loads(job_input)
            name, version, archive = request["name"], request["version"], base64.b64decode(request["zip"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TrainingFailed(f"the job's input is unreadable ({exc})") from exc
        self.report(TrainingProgress(stage="preparing"))
        registry = Registry(settings.model_dir, settings.default_model, strict=False)
        registry.refresh(self.catalog.defaults())
        template = registry.manifests.get(request["template"])
        if template is None:
            raise TrainingFailed(f"{request['template']}, whose input and preprocessing it takes, is gone from "
                                 "MODEL_DIR")
        try:
            found = read_archive(archive, Limits.of(settings), keep_bytes=True)
        except ArchiveRefused as exc:
            raise TrainingFailed(f"the archive is refused: {exc}") from exc
        base = registry.manifests.get(request["base"]) if request.get("base") else None
        labels = list(found.labels)
        fine_tune = base is not None and sorted(base.labels) == labels and _artifact_inside(base)
        if fine_tune:
            assert base is not None
            labels = list(base.labels)  # the base model's output order
        x, y = self.tensors(found.labels, found.images, labels, template)
        train_at, heldout_at = train_images.split(y)
        epochs = settings.training_epochs

        def on_epoch(epoch: int, loss: float, accuracy: float) -> None:
            self.report(TrainingProgress(stage="training", epoch=epoch, epochs=epochs, loss=round(loss, 6),
                                         accuracy=round(accuracy, 6), images=len(train_at)))

        self.report(TrainingProgress(stage="training", epochs=epochs, images=len(train_at)))
        deadline = time.monotonic() + settings.training_time_limit_seconds
        tune_from = base.contained_artifact() if fine_tune and base else None
        model = train_images.train(x[train_at], y[train_at], len(labels), template.input_shape,
                                   template.preprocessing.scale, tune_from, epochs, on_epoch, deadline)
        self.report(TrainingProgress(stage="evaluating", epoch=epochs, epochs=epochs, images=len(train_at)))
        accuracy = round(train_images.accuracy(model, x[heldout_at], y[heldout_at]), 4)
        self.report(TrainingProgress(stage="writing", epoch=epochs, epochs=epochs, images=len(train_at)))
        manifest = {
            "name": name, "version": version, "artifact": "model.keras",
            "input": template.input.model_dump(exclude_none=True), "input_shape": list(template.input_shape),
            "labels": labels, "preprocessing": template.preprocessing.model_dump(mode="json"),
            "metrics": {"heldout_accuracy": accuracy, "heldout_size": len(heldout_at), "train_size": len(train_at)},
            "training": {"job_id": self.job_id, "data_sha256": found.sha256, "epochs": epochs,
                         "fine_tuned_from": base.key if fine_tune and base else None,
                         "images_per_label": {label: len(found.labels[label]) for label in labels},
                         "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        }
        # Pin the default before the new version is visible: for a model without a pinned
        # default, "newest" would otherwise make the unvetted version serve at once.
        before = registry.default_version(name)
        if before is not None:
            self.catalog.pin_default(name, before.version)
        self.write(name, version, model, manifest)
        self.catalog.announce()
        registry.refresh(self.catalog.defaults())  # the default as it is now, not at the start
        activated, reason = self.activate(registry, name, version, accuracy, request.get("activate", "if_better"))
        return TrainingResult(version=version, heldout_accuracy=accuracy, heldout_size=len(heldout_at),
                              train_size=len(train_at), labels=labels,
                              fine_tuned_from=base.key if fine_tune and base else None,
                              activated=activated, reason=reason, training_data_sha256=found.sha256)

    def tensors(self, by_label: dict[str, list[str]], images: dict[str, bytes], labels: list[str],
                template: Manifest) -> tuple[np.ndarray, np.ndarray]:
        """Every image through the template's preprocessing, and its label's index."""
        x, y = [], []
        for index, label in enumerate(labels):
            for entry in by_label[label]:
                try:
                    x.append(preprocess(images[entry], template, settings.max_image_pixels))
                except (InvalidImage, ValueError) as exc:
                    raise TrainingFailed(f"entry {entry!r} could not be decoded: {exc}") from exc
                y.append(index)
        return np.stack(x).astype(np.float32), np.array(y, dtype=np.int64)

    def write(self, name: str, version: str, model: Any, manifest: dict) -> Path:
        """MODEL_DIR/<name>/<version>/ with model.keras and manifest.json, renamed into place
        whole from a staging folder on the same volume (no process sees it half written)."""
        Manifest.model_validate(manifest)  # what every reader will check
        model_dir = Path(settings.model_dir)
        final = model_dir / name / version
        if final.exists():
            raise TrainingFailed(f"{final} exists already; it was not overwritten")
        staging = model_dir / STAGING / self.job_id / version  # three deep: no scan reads it
        shutil.rmtree(staging.parent, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            model.save(staging / "model.keras")
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging, final)
        finally:
            shutil.rmtree(staging.parent, ignore_errors=True)
        log.info("wrote %s", final)
        return final

    def activate(self, registry: Registry, name: str, version: str, accuracy: float,
                 mode: str) -> tuple[bool, str]:
        """Make the new version the default, or keep the current one (pinned, so that the
        newest version does not take the name by itself); whether it did, and why."""
        pinned = self.catalog.defaults().get(name)
        current = registry.manifests.get(f"{name}:{pinned}") if pinned else None
        if current is None or current.version == version:  # no other default: the newest before this one
            current = next((m for m in sorted(
                (m for m in registry.manifests.values() if m.name == name and m.version != version),
                key=lambda m: version_order(m.version), reverse=True)), None)
        current_accuracy = current.metrics.get("heldout_accuracy") if current is not None else None
        if mode == "always":
            activated, reason = True, "activate=always"
        elif current is None:
            activated, reason = True, "the model's first version"
        elif current_accuracy is None:
            activated, reason = False, (f"the current default {current.key} records no held-out accuracy to "
                                        f"compare with; POST /models/{name}/default makes {version} the default")
        elif accuracy >= current_accuracy:
            activated, reason = True, (f"held-out accuracy {accuracy:.4f} is at least the current default "
                                       f"{current.key}'s {current_accuracy:.4f}")
        else:
            activated, reason = False, (f"held-out accuracy {accuracy:.4f} is below the current default "
                                        f"{current.key}'s {current_accuracy:.4f}")
        # Compare-and-set: a default an admin (or another job) set meanwhile is never undone.
        expected = current.version if current is not None else None
        if activated:
            if not self.catalog.set_default_if(name, expected=pinned, version=version):
                activated, reason = False, "the default changed while this version trained; it was left as set"
        elif expected is not None:
            self.catalog.pin_default(name, expected)
        return activated, reason

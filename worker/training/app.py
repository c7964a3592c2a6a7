"""The training worker: its own Celery app, consuming TRAINING_QUEUE only, one job at a time.

    celery -A worker.training.app worker -Q training --pool solo --concurrency 1

Never on the inference workers (they consume QUEUE_NAME only). A training job (api/routes/
training.py) is started like any job (lua/start.lua: leased to this run, its input handed
over: the ZIP and the request's choices), its lease renewed by a thread while it trains (so
no sweep takes it for lost), and finished like any job (lua/finish.lua: compacted, webhooks
due). In between (models/train_images.py): the archive read again (shared.archive), every
image preprocessed as the base version's manifest says, a stratified, seeded split (a fifth
of each label held out), training (fine-tuned from the current default when the labels are
exactly its labels, else from scratch), the held-out accuracy measured, the version written
to MODEL_DIR/<name>/<version>/ atomically (a folder renamed into place), announced
(shared.catalog), and made the default if it is at least as accurate on its held-out images
as the current default on its own (or if the request said `activate=always`).

Progress (stage, epoch, loss, accuracy) goes on the job (`progress`, lua/progress.lua) and
to Flower as a `task-progress` event after every epoch. TensorFlow is imported in the task,
in this process only. Time limit: TRAINING_TIME_LIMIT_SECONDS, checked after every batch
(Celery's own time limits need the prefork pool); past it the job fails with `time_limit`.
"""

import logging
import threading
import uuid
from pathlib import Path

from celery import Task, signals
from redis.exceptions import RedisError

from shared.broker import TRAIN_TASK, fair_queues, make_celery, patch, webhook_hooks
from shared.jobstore import JobStore
from shared.redisconn import target
from shared.schemas import (
    ErrorCode,
    JobError,
    TrainingResult,
)
from shared.settings import get_settings
from worker.training.staging import sweep_staging
from worker.training.trainer import Training, TrainingFailed

# kombu: safe when Redis is full; the inference queue fair (any consumer may restore its messages)
patch.install(fair_queues=fair_queues(get_settings()))
log = logging.getLogger(__name__)
settings = get_settings()

app = make_celery(
    settings, "training", settings.training_queue,
    worker_pool="solo",
    worker_concurrency=1,
    worker_prefetch_multiplier=1,  # one job at a time; the rest wait in Redis
    worker_send_task_events=True,  # Flower sees the job, and its task-progress events
    task_acks_late=True,  # a worker lost mid-training: redelivered, then start.lua decides
)


class Lease(threading.Thread):
    """Renews the job's lease while it trains (a third of a lease apart)."""

    def __init__(self, store: JobStore, job_id: str, run: str):
        super().__init__(name="training-lease", daemon=True)
        self.store, self.job_id, self.run_token = store, job_id, run
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(settings.lease_seconds / 3):
            try:
                self.store.renew([self.job_id], self.run_token, settings.lease_seconds)
            except RedisError as exc:
                log.warning("cannot renew the lease of training job %s: %s", self.job_id, exc)

    def __enter__(self) -> "Lease":
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.join()


_store: JobStore | None = None


def store() -> JobStore:
    global _store
    if _store is None:
        _store = JobStore.connect(target(settings), settings.job_ttl_seconds, settings.redis_timeout_seconds,
                                  retries=8, finished_ttl_seconds=settings.finished_job_ttl_seconds,
                                  hooks=webhook_hooks(app, settings.webhook_queue))
    return _store


@signals.worker_ready.connect
def _sweep_at_start(**_: object) -> None:
    """Before the first job: staging folders a killed run left behind (worker.training.staging)."""
    try:
        sweep_staging(Path(settings.model_dir), store())
    except (OSError, RedisError) as exc:  # a sweep is housekeeping: the next start tries again
        log.warning("could not sweep the training staging folders: %s", exc)


@app.task(name=TRAIN_TASK, bind=True, acks_late=True)
def train(self: Task, job_id: str) -> None:
    try:
        run_job(job_id, self)
    finally:  # done with its message (ran or skipped): its TRAINING_MAX_QUEUED_JOBS slot is free
        try:
            store().release_training_slot(job_id)
        except RedisError as exc:  # the slot lapses by itself (lua/training_slot.lua)
            log.warning("cannot release the training slot of %s: %s", job_id, exc)


def run_job(job_id: str, task: Task | None = None) -> None:
    jobs = store()
    run = uuid.uuid4().hex
    [started] = jobs.start([job_id], run, settings.lease_seconds, settings.max_job_runs)
    if not started.runs:
        log.info("skipping training job %s (%s)", job_id, started.ended or started.before or "gone")
        return  # a webhook due (running, completed) was queued by the start script itself
    outcome: TrainingResult | JobError
    with Lease(jobs, job_id, run):
        try:
            outcome = Training(jobs, job_id, run, task).run(started.input or "")
        except TrainingFailed as exc:
            outcome = JobError(code=ErrorCode.training_failed, message=str(exc))
        except Exception as exc:
            if type(exc).__name__ == "TimeLimit":  # models.train_images.TimeLimit
                outcome = JobError(code=ErrorCode.time_limit, message=(
                    f"training ran past TRAINING_TIME_LIMIT_SECONDS ({settings.training_time_limit_seconds:g} s)"))
            else:
                log.exception("training job %s failed", job_id)
                outcome = JobError(code=ErrorCode.training_failed, message=f"training failed: {exc}")
    log.info("training job %s: %s", job_id, outcome.model_dump_json())
    jobs.finish({job_id: outcome}, run)  # which queues its `completed` webhook, when asked for

"""What reports to Flower: the task events of every job a batch received, ran or skipped.

A batched task sends none of Celery's own task events (the strategy never runs Celery's
tracer), so they are sent here, on the loop's thread, or Flower shows jobs RECEIVED forever.
"""

import logging
import time

from shared.schemas import Prediction
from worker.inference.batch import Ran

log = logging.getLogger(__name__)


class FlowerReport:
    def __init__(self, eventer=None):
        self.eventer = eventer  # the consumer's event dispatcher; None: eager calls, tests

    def received(self, job_id: str, task_name: str) -> None:
        self.send("task-received", job_id, name=task_name, args="", kwargs="")

    def ran(self, job_ids: list[str], outcome: "Ran | Exception", started: float) -> None:
        """The started and terminal events of one batch (`outcome`: what run_batch returned,
        or what it raised)."""
        runtime = time.time() - started
        for job_id in job_ids:
            self.send("task-started", job_id, timestamp=started)
        if isinstance(outcome, Exception):  # Redis away mid-batch: the jobs' state decides
            for job_id in job_ids:
                self.send("task-failed", job_id, exception=type(outcome).__name__, traceback=str(outcome))
            return
        # A terminal event for every job received, or Flower shows it STARTED forever.
        for job_id, result in outcome.outcomes.items():
            if isinstance(result, Prediction):
                self.send("task-succeeded", job_id, result=result.label, runtime=runtime)
            else:
                self.send("task-failed", job_id, exception=result.code.value, traceback=result.message)
        for job_id, code in outcome.ended.items():
            self.send("task-failed", job_id, exception=code.value, traceback="it did not run")
        for job_id in set(job_ids) - set(outcome.outcomes) - set(outcome.ended):
            # Skipped: cancelled, gone, finished, or running elsewhere (whose terminal state
            # Flower keeps: a later, lower-precedence event does not replace it).
            self.send("task-revoked", job_id, terminated=False, signum=None, expired=False)
        log.info("batch of %d ran in %.1f ms", len(job_ids), runtime * 1000)

    def send(self, kind: str, job_id: str, **fields) -> None:
        eventer = self.eventer
        if eventer is not None and eventer.enabled:
            try:
                eventer.send(kind, uuid=job_id, **fields)
            except Exception as exc:  # monitoring must never stop serving
                log.warning("could not send %s event: %s", kind, exc)

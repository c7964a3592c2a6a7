"""The batched inference task (celery-batches), with the fixes 0.11 needs for serving."""

import logging
import time
import uuid

from celery_batches import Batches

from shared.queue import INFER_TASK
from shared.schemas import Prediction
from worker.app import app, settings
from worker.batch import parse, run_batch

log = logging.getLogger(__name__)


class ServingBatches(Batches):
    """celery-batches' Batches, made safe to serve with.

    - 0.11 keeps its flush-timer handle across a broker reconnect although the consumer
      cleared the timer, so a worker can hold messages forever (upstream #99). The strategy
      is rebuilt on every consumer (re)start: re-arm the timer there.
    - Batched requests send no task events; send them, so Flower sees every job.
    """

    def Strategy(self, task, app, consumer):
        self._tref = None
        self._eventer = consumer.event_dispatcher
        handle = super().Strategy(task, app, consumer)

        def on_message(message, body, ack, reject, callbacks, **kwargs):
            handle(message, body, ack, reject, callbacks, **kwargs)
            self.send_event("task-received", message.headers["id"], name=task.name, args="", kwargs="")

        return on_message

    def send_event(self, kind: str, job_id: str, **fields) -> None:
        eventer = getattr(self, "_eventer", None)
        if eventer is not None and eventer.enabled:
            try:
                eventer.send(kind, uuid=job_id, **fields)
            except Exception as exc:  # monitoring must never stop serving
                log.warning("could not send %s event: %s", kind, exc)


@app.task(
    base=ServingBatches,
    bind=True,
    name=INFER_TASK,
    acks_late=True,
    flush_every=settings.max_batch_size,
    # A repeating timer of 0 would spin the event loop.
    flush_interval=max(settings.max_delay_ms, 1) / 1000,
)
def infer(self, requests):
    items = [item for item in (parse(r.args) for r in requests) if item is not None]
    started = time.perf_counter()
    for item in items:
        self.send_event("task-started", item.job_id)
    serving = self.app.serving
    run = uuid.uuid4().hex
    serving.in_flight[run] = [item.job_id for item in items]  # the heartbeat renews their leases
    try:
        ran = run_batch(items, serving.store, serving.runtime.models, serving.notify_webhooks, run=run,
                        lease_seconds=settings.lease_seconds, max_runs=settings.max_job_runs,
                        failed=serving.runtime.failed)
    finally:
        del serving.in_flight[run]
    runtime = time.perf_counter() - started
    # A terminal event for every job received, or Flower shows it STARTED forever.
    for job_id, outcome in ran.outcomes.items():
        if isinstance(outcome, Prediction):
            self.send_event("task-succeeded", job_id, result=outcome.label, runtime=runtime)
        else:
            self.send_event("task-failed", job_id, exception=outcome.code.value, traceback=outcome.message)
    for job_id, code in ran.ended.items():
        self.send_event("task-failed", job_id, exception=code.value, traceback="it did not run")
    for job_id in {item.job_id for item in items} - set(ran.outcomes) - set(ran.ended):
        # Skipped: cancelled, gone, finished, or running elsewhere (whose terminal state
        # Flower keeps: a later, lower-precedence event does not replace it).
        self.send_event("task-revoked", job_id, terminated=False, signum=None, expired=False)
    log.info("batch of %d ran in %.1f ms", len(items), runtime * 1000)

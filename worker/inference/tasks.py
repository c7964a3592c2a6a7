"""The batched inference task: celery-batches receives, the batcher's model thread runs.

Celery's event loop receives (shared/broker/patch.py takes a burst of messages per round trip)
and celery-batches turns each message into a request (holding back any with an ETA); each
burst is handed to the batcher (worker/inference/batcher.py), whose model thread runs a batch as soon
as the model is free, while the loop keeps receiving. A finished batch comes back to the
loop's thread, which acknowledges its messages in one round trip and sends Flower's events:
kombu's and Celery's objects are only ever used on that thread.
"""

import logging
import time
import uuid
from collections import deque

from celery import bootsteps
from celery_batches import Batches

from shared.broker import INFER_TASK
from shared.broker.compat import require
from shared.broker.patch import acknowledge
from shared.schemas import Prediction
from worker.inference.app import app, settings
from worker.inference.batch import Ran, parse, run_batch
from worker.inference.batcher import Batcher

require("celery-batches")
log = logging.getLogger(__name__)


class ServingBatches(Batches):
    """celery-batches' Batches, made to feed a model thread.

    - `flush_every=1`: celery-batches flushes each request as it arrives; `flush` collects a
      burst and hands it to the batcher once the loop has delivered the whole burst.
    - 0.11 keeps its flush-timer handle across a broker reconnect although the consumer
      cleared the timer (upstream #99): the strategy, rebuilt on every consumer (re)start,
      re-arms it. The timer only matters for requests with an ETA (none of ours have one).
    - Batched requests send no task events; they are sent here, so Flower sees every job.
    """

    batcher: "Batcher[object, Ran] | None" = None
    _hub = None
    _eventer = None

    def Strategy(self, task, app, consumer):
        self._tref = None
        self._eventer = consumer.event_dispatcher
        self._hub = consumer.hub
        self._burst: list = []
        self._finished: deque = deque()
        if self.batcher is None:
            self.batcher = Batcher(self._run, self._ran, settings.max_batch_size, settings.max_delay_ms / 1000)
        self.batcher.start()
        handle = super().Strategy(task, app, consumer)

        def on_message(message, body, ack, reject, callbacks, **kwargs):
            handle(message, body, ack, reject, callbacks, **kwargs)
            self.send_event("task-received", message.headers["id"], name=task.name, args="", kwargs="")

        return on_message

    def flush(self, requests) -> None:
        """Collect what celery-batches flushes; hand the burst over once it is all in."""
        first = not self._burst
        self._burst.extend(requests)
        if first:
            if self._hub is not None:
                self._hub.call_soon(self._hand_over)  # after the loop delivered the burst
            else:
                self._hand_over()

    def _hand_over(self) -> None:
        burst, self._burst = self._burst, []
        if self.batcher is not None:
            self.batcher.submit(burst)

    def _run(self, requests) -> Ran:
        """On the model thread: run the jobs, record their outcomes (before any ack)."""
        items = [item for item in (parse(r.args) for r in requests) if item is not None]
        serving = self.app.serving
        run = uuid.uuid4().hex
        serving.in_flight[run] = [item.job_id for item in items]  # the heartbeat renews their leases
        try:
            return run_batch(items, serving.store, serving.runtime.models, serving.notify_webhooks, run=run,
                             lease_seconds=settings.lease_seconds, max_runs=settings.max_job_runs,
                             failed=serving.runtime.failed)
        finally:
            del serving.in_flight[run]

    def _ran(self, requests, outcome, started: float) -> None:
        """On the model thread: hand the finished batch back to the loop's thread."""
        self._finished.append((requests, outcome, started))
        if self._hub is not None:
            self._hub.call_soon(self.settle)
        else:
            self.settle()

    def settle(self) -> None:
        """On the loop's thread: acknowledge finished batches and send their events."""
        while self._finished:
            requests, outcome, started = self._finished.popleft()
            try:
                acknowledge(requests)
                self._report(requests, outcome, started)
            except Exception:  # the next batches are still settled
                log.exception("could not settle a batch of %d", len(requests))

    def _report(self, requests, outcome: "Ran | Exception", started: float) -> None:
        runtime = time.time() - started
        job_ids = [r.id for r in requests]
        for job_id in job_ids:
            self.send_event("task-started", job_id, timestamp=started)
        if isinstance(outcome, Exception):  # Redis away mid-batch: the jobs' state decides
            for job_id in job_ids:
                self.send_event("task-failed", job_id, exception=type(outcome).__name__, traceback=str(outcome))
            return
        # A terminal event for every job received, or Flower shows it STARTED forever.
        for job_id, result in outcome.outcomes.items():
            if isinstance(result, Prediction):
                self.send_event("task-succeeded", job_id, result=result.label, runtime=runtime)
            else:
                self.send_event("task-failed", job_id, exception=result.code.value, traceback=result.message)
        for job_id, code in outcome.ended.items():
            self.send_event("task-failed", job_id, exception=code.value, traceback="it did not run")
        for job_id in set(job_ids) - set(outcome.outcomes) - set(outcome.ended):
            # Skipped: cancelled, gone, finished, or running elsewhere (whose terminal state
            # Flower keeps: a later, lower-precedence event does not replace it).
            self.send_event("task-revoked", job_id, terminated=False, signum=None, expired=False)
        log.info("batch of %d ran in %.1f ms", len(requests), runtime * 1000)

    def send_event(self, kind: str, job_id: str, **fields) -> None:
        eventer = self._eventer
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
    flush_every=1,  # each request to the batcher as it arrives (see ServingBatches)
    flush_interval=1,  # only for requests with an ETA
)
def infer(self, requests):
    # Celery's eager and direct calls (tests, `infer.apply`): run here, on this thread.
    ran = self._run(requests)
    self._report(requests, ran, time.time())
    return None


class ModelThread(bootsteps.StartStopStep):
    """When the consumer stops: the running batch finishes and, at a warm shutdown, is
    acknowledged while the connection is still open; what waited is left unacknowledged, and
    kombu puts it back in the queue. (At a reconnect Celery closes the channel first, which
    puts back everything it held; the job store then skips what already ran.)"""

    requires = frozenset({"celery.worker.consumer.tasks:Tasks"})

    def stop(self, consumer):
        task = app.tasks[INFER_TASK]
        if isinstance(task, ServingBatches) and task.batcher is not None:
            left = task.batcher.stop(settings.lease_seconds)
            if left:
                log.info("%d job(s) handed back to the queue", len(left))
            task.settle()


app.steps["consumer"].add(ModelThread)

"""The batched inference task: a strategy of our own receives, the batcher's model thread runs.

Celery's event loop receives (shared/broker/patch.py takes a burst of messages per round
trip); the task's strategy (worker.inference.receiving) turns each message into a request
and hands each burst to the batcher (worker.inference.batcher), whose model thread runs a
batch as soon as the model is free, while the loop keeps receiving. A finished batch goes
back to the loop's thread (worker.inference.settling), which acknowledges its messages in
one round trip and reports to Flower (worker.inference.reporting): kombu's and Celery's
objects are only ever used on that thread.

celery-batches did this until 0.11 and was dropped: with a model thread of our own, its
buffer, flush timer (whose handle outlived reconnects, upstream #99) and flush_every=1 were
all worked around; what is left of it is Celery's request object, used here directly.
"""

import logging
from types import SimpleNamespace

from celery import Task, bootsteps

from shared.broker import INFER_TASK
from worker.inference.app import app, settings
from worker.inference.batch import Ran
from worker.inference.batcher import Batcher
from worker.inference.receiving import Receiving
from worker.inference.reporting import FlowerReport
from worker.inference.settling import Settling

log = logging.getLogger(__name__)


class ServingTask(Task):
    """The inference task: its strategy feeds the model thread. The same batcher serves
    across consumer restarts (a broker reconnect rebuilds the strategy)."""

    batcher: "Batcher[object, Ran] | None" = None
    settling: Settling | None = None

    def Strategy(self, task, app, consumer):
        report = FlowerReport(consumer.event_dispatcher)
        if self.settling is None:
            self.settling = Settling(self.app, settings, report)
        self.settling.report = report
        self.settling.call_soon = consumer.hub.call_soon if consumer.hub is not None else None
        if self.batcher is None:
            self.batcher = Batcher(self.settling.run, self.settling.ran, settings.max_batch_size,
                                   settings.max_delay_ms / 1000, hold=self.settling.hold)
            self.app.serving.loads.resubmit = self.batcher.submit  # jobs whose version loaded
        self.batcher.start()
        return Receiving(task, app, consumer, self.batcher.submit, report)

    def settle(self) -> None:
        if self.settling is not None:
            self.settling.settle()


@app.task(base=ServingTask, bind=True, name=INFER_TASK, acks_late=True)
def infer(self, job_id: str, model_key: str, submitted_at: float) -> None:
    # Celery's eager and direct calls (`infer.apply`): one job, run here, on this thread.
    request = SimpleNamespace(id=job_id, args=[job_id, model_key, submitted_at])
    Settling(self.app, settings, FlowerReport()).run_now([request])


class ModelThread(bootsteps.StartStopStep):
    """When the consumer stops: the running batch finishes and, at a warm shutdown, is
    acknowledged while the connection is still open; what waited is left unacknowledged, and
    kombu puts it back in the queue. (At a reconnect Celery closes the channel first, which
    puts back everything it held; the job store then skips what already ran.)"""

    requires = frozenset({"celery.worker.consumer.tasks:Tasks"})

    def stop(self, consumer):
        task = app.tasks[INFER_TASK]
        if isinstance(task, ServingTask) and task.batcher is not None:
            left = task.batcher.stop(settings.lease_seconds)
            if left:
                log.info("%d job(s) handed back to the queue", len(left))
            task.settle()


app.steps["consumer"].add(ModelThread)

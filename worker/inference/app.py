"""The worker's Celery app.

    celery -A worker.inference.app worker

One process per GPU (or one for the CPU) on the solo pool: TensorFlow is not fork-safe,
so the model is loaded in the process that serves it, never in a parent that forks.
"""

import contextlib
import logging
import os
import threading
from typing import TYPE_CHECKING, cast

from celery import Celery, bootsteps, signals
from celery.concurrency import get_implementation
from celery.concurrency.prefork import TaskPool as PreforkPool
from redis.exceptions import RedisError

from shared.broker import fair_queues, make_celery, patch
from shared.broker.rescue import rescue_lost
from shared.settings import get_settings

if TYPE_CHECKING:
    from worker.inference.serving import Serving

# kombu: bulk receive, safe when Redis is full, the inference queue fair (shared/broker/fair.py)
patch.install(fair_queues=fair_queues(get_settings()))
log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 5


class WorkerApp(Celery):
    """The Celery app, carrying this process's serving state once it is built."""

    _serving: "Serving | None" = None

    @property
    def serving(self) -> "Serving":
        if self._serving is None:
            raise RuntimeError("the serving state is not built in this process (see worker.inference.app)")
        return self._serving

    def serve(self) -> None:
        """Build the serving state in this process, unless it has it already."""
        if self._serving is not None and self._serving.pid == os.getpid():
            return
        from worker.inference.serving import Serving  # TensorFlow is imported here, after any fork

        self._serving = Serving.build(get_settings(), self)


settings = get_settings()
app = cast(WorkerApp, make_celery(
    settings, "worker", cls=WorkerApp,
    include=["worker.inference.tasks"],
    worker_pool="solo",
    worker_concurrency=1,
    worker_send_task_events=True,
    # Prefork children, if someone insists, need time to load and warm the model.
    worker_proc_alive_timeout=120,
))


def _serve_or_exit() -> None:
    """A worker that cannot build its serving state (no Redis, no readable model folder)
    must not claim to be ready: Celery only logs a signal handler's error and would consume
    jobs it cannot run, redelivering them forever. Exit; the supervisor restarts it."""
    try:
        app.serve()
    except Exception:
        log.critical("cannot serve; exiting", exc_info=True)
        raise SystemExit(1) from None


@signals.worker_init.connect
def _load_unless_forking(sender, **_):
    if not issubclass(get_implementation(sender.pool_cls), PreforkPool):
        _serve_or_exit()


@signals.worker_process_init.connect
def _load_in_child(**_):
    _serve_or_exit()


class Heartbeat(bootsteps.StartStopStep):
    """Every HEARTBEAT_SECONDS, on a thread of its own (so it goes on while a batch runs):
    tells /readyz this worker is consuming (a heartbeat that lapses if we stop), renews the
    leases of the jobs being run, re-queues jobs whose message Redis lost in delivery, and
    fails jobs left running by a lost worker whose message is gone too."""

    requires = frozenset({"celery.worker.consumer.tasks:Tasks"})

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, consumer):
        self.beat(consumer.hostname)  # at once: ready means ready
        if self.thread is None or not self.thread.is_alive():  # one thread, across reconnects
            self.stopping.clear()
            self.thread = threading.Thread(target=self.run, args=(consumer.hostname,), name="heartbeat",
                                           daemon=True)
            self.thread.start()

    def run(self, hostname: str) -> None:
        while not self.stopping.wait(HEARTBEAT_SECONDS):
            self.beat(hostname)

    def stop(self, consumer):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(HEARTBEAT_SECONDS)
            self.thread = None
        # Redis away, or nothing was served: the heartbeat lapses by itself.
        with contextlib.suppress(RedisError, RuntimeError):
            app.serving.store.forget_worker(consumer.hostname)

    def beat(self, hostname: str) -> None:
        serving = app.serving
        store = serving.store
        try:
            store.heartbeat(hostname, ttl=3 * HEARTBEAT_SECONDS, serves=serving.serves)
            if store.ring(settings.queue_name):  # a doorbell lost with a worker (shared/broker/fair.py)
                log.info("rang the inference queue's doorbell again: jobs were waiting without one")
            for run, job_ids in list(serving.in_flight.items()):
                store.renew(job_ids, run, settings.lease_seconds)
            # A lease that ended a visibility timeout ago: its message was not redelivered.
            lost = store.sweep_lost(settings.visibility_timeout_seconds)
            if lost:  # their `completed` webhooks were queued by the sweep itself
                log.warning("failed %d job(s) whose worker and message were lost: %s", len(lost), ", ".join(lost))
            # Last: with Redis full, putting messages back is refused (and waits a beat).
            rescued = rescue_lost(store, serving.celery, settings)
            if rescued:
                log.warning("re-queued %d job(s) whose message was lost in delivery", rescued)
        except RedisError as exc:
            log.warning("heartbeat failed: %s", exc)


app.steps["consumer"].add(Heartbeat)

"""The worker's Celery app.

    celery -A worker.app worker

One process per GPU (or one for the CPU) on the solo pool: TensorFlow is not fork-safe,
so the model is loaded in the process that serves it, never in a parent that forks.
"""

import logging
import os

from celery import bootsteps, signals
from celery.concurrency import get_implementation
from celery.concurrency.prefork import TaskPool as PreforkPool
from prometheus_client import REGISTRY, start_http_server
from redis.exceptions import RedisError

from shared.backlog import BacklogCollector
from shared.jobstore import JobStore
from shared.queue import make_celery, webhook_message
from shared.registry import Registry
from shared.settings import get_settings
from worker import metrics

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 5

settings = get_settings()
app = make_celery(settings, "worker")
app.conf.update(
    include=["worker.tasks"],
    worker_pool="solo",
    worker_concurrency=1,
    worker_send_task_events=True,
    # Prefork children, if someone insists, need time to load and warm the model.
    worker_proc_alive_timeout=120,
)


class Serving:
    """What this process serves with; built once, in the serving process."""

    runtime = None
    store: JobStore | None = None

    @classmethod
    def load(cls) -> None:
        from worker.runtime import (
            Runtime,  # TensorFlow is imported here, after any fork
        )

        if cls.runtime is not None and cls.runtime.pid == os.getpid():
            return
        cls.store = JobStore.from_url(
            settings.redis_url, settings.job_ttl_seconds, settings.redis_timeout_seconds, retries=8,
            cache_ttl_seconds=settings.result_cache_ttl_seconds,
        )
        cls.runtime = Runtime(Registry(settings.model_dir, settings.default_model), settings.max_batch_size)
        for key, seconds in cls.runtime.load_seconds.items():
            metrics.MODEL_LOAD.labels(key).set(seconds)
        if settings.worker_metrics_port:
            REGISTRY.register(BacklogCollector(cls.store.redis, settings.queue_name))
            start_http_server(settings.worker_metrics_port)


@signals.worker_init.connect
def _load_unless_forking(sender, **_):
    if not issubclass(get_implementation(sender.pool_cls), PreforkPool):
        Serving.load()


@signals.worker_process_init.connect
def _load_in_child(**_):
    Serving.load()


def notify_webhooks(hooks: list[tuple[str, str]]) -> None:
    """Queue webhook deliveries for the webhook worker, in one round trip."""
    queue = settings.webhook_queue
    pipe = Serving.store.redis.pipeline(transaction=False)
    for job_id, event in hooks:
        pipe.lpush(queue, webhook_message(app, queue, job_id, event))
    pipe.execute()


class Heartbeat(bootsteps.StartStopStep):
    """Tells the API's /readyz that a worker is consuming (a key that expires if we stop), and
    re-queues jobs whose message Redis lost in delivery (JobStore.rescue_lost)."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.tref = None

    def start(self, consumer):
        self.beat(consumer)
        self.tref = consumer.timer.call_repeatedly(HEARTBEAT_SECONDS, self.beat, (consumer,))

    def stop(self, consumer):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        if Serving.store is not None:
            try:
                Serving.store.forget_worker(consumer.hostname)
            except RedisError:
                pass

    def beat(self, consumer):
        try:
            Serving.store.heartbeat(consumer.hostname, ttl=3 * HEARTBEAT_SECONDS)
            rescued = Serving.store.rescue_lost(settings.queue_name, settings.visibility_timeout_seconds)
            if rescued:
                log.warning("re-queued %d job(s) whose message was lost in delivery", rescued)
        except RedisError as exc:
            log.warning("heartbeat failed: %s", exc)


app.steps["consumer"].add(Heartbeat)

"""What a worker process serves with, built once in the process that serves (TensorFlow is
not fork-safe) and passed to the task and the heartbeat through the Celery app."""

import gc
import logging
import os
from dataclasses import dataclass, field

from celery import Celery
from prometheus_client import REGISTRY, start_http_server
from redis.exceptions import RedisError

from shared.broker import webhook_hooks
from shared.broker.backlog import BacklogCollector
from shared.catalog import Catalog
from shared.jobstore import JobStore
from shared.redisconn import target
from shared.registry import Registry
from shared.schemas import Serves
from shared.settings import Settings
from worker.inference import metrics
from worker.inference.loads import OnDemand
from worker.inference.runtime import Runtime
from worker.inference.versions import VersionWatcher

log = logging.getLogger(__name__)


@dataclass
class Serving:
    settings: Settings
    celery: Celery  # builds webhook task messages
    store: JobStore
    runtime: Runtime
    pid: int
    # Run token -> the jobs that run is running: the heartbeat renews their leases.
    in_flight: dict[str, list[str]] = field(default_factory=dict)
    watcher: VersionWatcher | None = None
    loads: OnDemand = field(init=False)

    def __post_init__(self) -> None:
        # Waiting jobs hold prefetch room: at most all but one batch of it, so the other
        # tenants' jobs are still received while a version loads.
        waiting = max(1, self.settings.max_batch_size * (self.settings.prefetch_batches - 1))
        self.loads = OnDemand(self.runtime, self.settings.model_load_cooldown_seconds, waiting)

    @classmethod
    def build(cls, settings: Settings, celery: Celery) -> "Serving":
        """Connect, load and warm the models (worker.inference.runtime), follow model changes
        (worker.inference.versions), and serve this process's metrics."""
        store = JobStore.connect(target(settings), settings.job_ttl_seconds, settings.redis_timeout_seconds,
                                 retries=8, cache_ttl_seconds=settings.result_cache_ttl_seconds,
                                 finished_ttl_seconds=settings.finished_job_ttl_seconds,
                                 hooks=webhook_hooks(celery, settings.webhook_queue))
        # The versions on disk and the defaults announced through Redis (shared.catalog); a
        # manifest that is invalid is reported, and the other models serve.
        registry = Registry(settings.model_dir, settings.default_model, strict=False)
        catalog = Catalog.connect(target(settings), settings.redis_timeout_seconds)
        epoch = None
        try:
            epoch, defaults = catalog.read()
            registry.refresh(defaults)
        except RedisError as exc:  # the watcher reads them once Redis answers
            log.warning("cannot read the model defaults yet: %s", exc)
        runtime = Runtime(registry, settings.max_batch_size, settings.max_loaded_versions, catalog.loadable)
        watcher = VersionWatcher(runtime, catalog, settings.model_poll_seconds, settings.model_scan_seconds, epoch)
        for key, seconds in runtime.load_seconds.items():
            metrics.MODEL_LOAD.labels(key).set(seconds)
        if settings.worker_metrics_port:
            REGISTRY.register(BacklogCollector(store, settings.queue_name))
            start_http_server(settings.worker_metrics_port)
        # TensorFlow and Keras leave millions of long-lived objects: take them out of the
        # cyclic GC, so full collections while serving (and the one at exit, ~2 s) skip them.
        gc.freeze()
        watcher.start()  # loads, switches and unloads versions from now on (worker.inference.versions)
        return cls(settings, celery, store, runtime, os.getpid(), watcher=watcher)

    @property
    def serves(self) -> Serves:
        return Serves(models=sorted(self.runtime.models), failed=self.runtime.failed)

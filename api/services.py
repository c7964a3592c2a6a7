"""The objects routes share, built once per process at start-up (see api.main.lifespan)."""

from dataclasses import dataclass

from celery import Celery

from api.decoding import DecodePool
from api.events import TaskEvents
from api.waiter import Waiter
from shared.jobstore import AsyncJobStore
from shared.queue import make_celery
from shared.registry import Registry
from shared.settings import Settings


@dataclass
class Services:
    settings: Settings
    registry: Registry
    store: AsyncJobStore
    # Builds task messages (see shared.queue.redis_message); connects only to send events.
    celery: Celery
    events: TaskEvents
    waiter: Waiter
    decoder: DecodePool

    @classmethod
    def build(cls, settings: Settings) -> "Services":
        store = AsyncJobStore.connect(settings.redis_url, settings.job_ttl_seconds, settings.redis_timeout_seconds,
                                      settings.redis_max_connections,
                                      finished_ttl_seconds=settings.finished_job_ttl_seconds)
        celery = make_celery(settings, "api")
        return cls(
            settings=settings,
            registry=Registry(settings.model_dir, settings.default_model),
            store=store,
            celery=celery,
            events=TaskEvents(celery),
            decoder=DecodePool(settings.decode_workers, settings.decode_backlog),
            waiter=Waiter(settings.redis_url, store.keys.finished_channel, settings.redis_timeout_seconds),
        )

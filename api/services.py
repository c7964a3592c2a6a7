"""The objects routes share, built once per process at start-up (see api.main.lifespan)."""

from dataclasses import dataclass
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request

from api.decoding import DecodePool
from api.events import TaskEvents
from api.versions import Versions
from api.waiter import Waiter
from shared.broker import make_celery, webhook_hooks
from shared.catalog import AsyncCatalog
from shared.jobstore import AsyncJobStore
from shared.redisconn import target
from shared.registry import Registry
from shared.settings import Settings


@dataclass
class Services:
    settings: Settings
    registry: Registry
    store: AsyncJobStore
    # Builds task messages (see shared.broker.redis_message); connects only to send events.
    celery: Celery
    events: TaskEvents
    waiter: Waiter
    decoder: DecodePool
    # Keeps `registry` in step with MODEL_DIR and the defaults in Redis (started by the lifespan).
    versions: Versions

    @classmethod
    def build(cls, settings: Settings, registry: Registry | None = None) -> "Services":
        celery = make_celery(settings, "api")
        # With the hooks, the create (a cached result) and cancel scripts queue webhooks themselves.
        store = AsyncJobStore.connect(target(settings), settings.job_ttl_seconds, settings.redis_timeout_seconds,
                                      settings.redis_max_connections,
                                      finished_ttl_seconds=settings.finished_job_ttl_seconds,
                                      hooks=webhook_hooks(celery, settings.webhook_queue))
        # Not strict: an invalid manifest is reported (GET /readyz) and the other models serve.
        registry = registry or Registry(settings.model_dir, settings.default_model, strict=False)
        return cls(
            settings=settings,
            registry=registry,
            store=store,
            celery=celery,
            events=TaskEvents(celery),
            decoder=DecodePool(settings.decode_workers, settings.decode_backlog),
            waiter=Waiter(target(settings), store.keys.finished_channel, settings.redis_timeout_seconds),
            versions=Versions(registry, AsyncCatalog.connect(target(settings), settings.redis_timeout_seconds),
                              settings.model_poll_seconds, settings.model_scan_seconds),
        )


async def services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


# How a route or a dependency (api.auth, api.deps) takes them: `svc: ServicesDep`.
ServicesDep = Annotated[Services, Depends(services)]

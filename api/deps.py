"""The objects routes share, built once per process at start-up (see api.main.lifespan).

Routes get them through one async dependency: FastAPI runs sync dependencies in its
threadpool, a thread hop per dependency per request.
"""

from dataclasses import dataclass

from celery import Celery
from fastapi import Request

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
    # Builds task messages; never opens a broker connection (see shared.queue.redis_message).
    celery: Celery
    waiter: Waiter

    @classmethod
    def build(cls, settings: Settings) -> "Services":
        return cls(
            settings=settings,
            registry=Registry(settings.model_dir, settings.default_model),
            # No retries: when Redis is down the client gets a 503 at once, not a hung request.
            store=AsyncJobStore.from_url(settings.redis_url, settings.job_ttl_seconds, settings.redis_timeout_seconds),
            celery=make_celery(settings, "api"),
            waiter=Waiter(settings.redis_url),
        )


async def services(request: Request) -> Services:
    return request.app.state.services

"""Process-wide objects the routes share, built once from the one settings object."""

from functools import lru_cache

from celery import Celery
from fastapi import Request

from shared.jobstore import JobStore
from shared.queue import make_celery
from shared.registry import Registry
from shared.settings import Settings, get_settings


@lru_cache
def get_registry() -> Registry:
    settings = get_settings()
    return Registry(settings.model_dir, settings.default_model)


@lru_cache
def get_store() -> JobStore:
    settings = get_settings()
    # No retries: when Redis is down the client gets a 503 at once, not a hung request.
    return JobStore.from_url(settings.redis_url, settings.job_ttl_seconds, settings.redis_timeout_seconds)


@lru_cache
def get_producer() -> Celery:
    return make_celery(get_settings(), "api")


def get_waiter(request: Request):
    return request.app.state.waiter


__all__ = ["Settings", "get_settings", "get_registry", "get_store", "get_producer", "get_waiter"]

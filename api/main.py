"""The HTTP front door. Never imports TensorFlow.

    uvicorn api.main:app
"""

import logging
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from prometheus_client import REGISTRY

from api import errors
from api.deps import declared_fields_only
from api.limits import LimitBody
from api.metrics import HttpMetrics, metrics_response
from api.openapi import App
from api.routes import health, jobs, models, predict
from api.services import Services
from shared.backlog import BacklogCollector
from shared.jobstore import JobStore
from shared.settings import get_settings


@asynccontextmanager
async def lifespan(app: FastAPI):
    svc = app.state.services = Services.build(get_settings())
    svc.waiter.start()
    yield
    await svc.waiter.stop()
    await svc.store.close()
    svc.decoder.close()
    svc.events.close()


def create_app() -> FastAPI:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper())
    app = App(
        title="Queue inference",
        description="Submit images as jobs; poll them or get a webhook when they finish.",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(declared_fields_only)],
        takes_webhooks=bool(settings.webhook_secret),
    )
    app.add_middleware(LimitBody, settings=settings)
    app.add_middleware(HttpMetrics)
    # Prometheus collects synchronously, so the backlog gauge gets a synchronous store of its own.
    backlog_store = JobStore.connect(settings.redis_url, settings.job_ttl_seconds, timeout=1)
    REGISTRY.register(BacklogCollector(backlog_store, settings.queue_name))
    app.add_api_route("/metrics", metrics_response, include_in_schema=False)
    errors.install(app)
    for module in (jobs, predict, models, health):
        app.include_router(module.router)
    return app


app = create_app()

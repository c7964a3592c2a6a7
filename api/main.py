"""The HTTP front door. Never imports TensorFlow.

    uvicorn api.main:app

The same process serves the ops port (/metrics, /queue) on OPS_HOST:OPS_PORT (api/ops.py).
"""

import logging
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from prometheus_client import REGISTRY
from starlette.types import ASGIApp

from api import access_log, errors, ops, web
from api.deps import declared_fields_only, takes_webhooks
from api.door import Door
from api.limits import LimitBody
from api.metrics import HttpMetrics
from api.openapi import App
from api.routes import batches, health, jobs, models, predict, training, webhooks
from api.services import Services
from shared.broker.backlog import BacklogCollector
from shared.jobstore import JobStore
from shared.redisconn import target
from shared.registry import Registry
from shared.settings import get_settings

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings = get_settings()
    if settings.auth_disabled:
        log.warning("!" * 72)
        log.warning("AUTH_DISABLED=true: NO API KEYS. Anyone who reaches this port can read, cancel and submit")
        log.warning("every job, with no rate limit or quota. For experiments on one machine only.")
        log.warning("!" * 72)
    # One registry for the routes and the document (a features model's body), following
    # MODEL_DIR and the defaults in Redis (api.versions).
    registry = app.registry if isinstance(app, App) else None
    svc = app.state.services = Services.build(settings, registry)
    svc.waiter.start()
    if isinstance(app, App):
        svc.versions.on_change = app.forget_document
    await svc.versions.start()
    async with ops.serving(svc, settings):  # /metrics, /queue on OPS_HOST:OPS_PORT (api/ops.py)
        yield
    await svc.versions.stop()
    await svc.waiter.stop()
    await svc.store.close()
    svc.decoder.close()
    svc.events.close()


class PublicApp(App):
    """The access log wraps everything, Starlette's own 500 handler (outside every
    add_middleware) included, so every answer gets its X-Request-ID and its line."""

    def build_middleware_stack(self) -> ASGIApp:
        return access_log.AccessLog(super().build_middleware_stack())


def create_app() -> FastAPI:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper())
    access_log.configure()
    app = PublicApp(
        title="Queue inference",
        description="Submit images as jobs; poll them or get a webhook when they finish.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc: api/web.py, from kept assets (no CDN)
        redoc_url=None,
        dependencies=[Depends(declared_fields_only)],
        takes_webhooks=takes_webhooks(settings),
        registry=Registry(settings.model_dir, settings.default_model, strict=False),
    )
    # Outermost first: metrics, then the door (401 before any body is read), then the body limits.
    app.add_middleware(LimitBody, settings=settings)
    app.add_middleware(Door, router=app.router, settings=settings)
    app.add_middleware(HttpMetrics)
    # Prometheus collects synchronously, so the backlog gauge gets a synchronous store of its own.
    backlog_store = JobStore.connect(target(settings), settings.job_ttl_seconds, timeout=1)
    REGISTRY.register(BacklogCollector(backlog_store, settings.queue_name))
    errors.install(app)
    for json_module in (jobs, predict):  # JSON bodies of features models: first (api.features)
        json_module.add_json_routes(app)
    for module in (batches, jobs, predict, models, training, webhooks, health):  # /jobs/batch before /jobs/{id}
        app.include_router(module.router)
    web.install(app)  # the web page at /, /docs, /redoc, /static
    return app


app = create_app()

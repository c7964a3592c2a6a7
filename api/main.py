"""The HTTP front door. Never imports TensorFlow.

    uvicorn api.main:app
"""

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from prometheus_client import REGISTRY

from api.deps import get_store
from api.metrics import HttpMetrics, metrics_response
from api.routes import health, jobs, models
from api.waiter import Waiter
from api.uploads import LimitUploadSize
from shared.backlog import BacklogCollector
from shared.settings import get_settings

RETRY_AFTER_SECONDS = 2


def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    logging.getLogger("api").warning("queue unavailable on %s: %s", request.url.path, exc)
    return JSONResponse(
        {"detail": "the job queue (Redis) is unavailable; retry shortly"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.waiter = Waiter(get_settings().redis_url)
    app.state.waiter.start()
    yield
    await app.state.waiter.stop()


def create_app() -> FastAPI:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper())
    app = FastAPI(
        title="Queue inference",
        description="Submit images as jobs; poll them or get a webhook when they finish.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.add_middleware(LimitUploadSize, max_bytes=settings.max_upload_bytes)
    app.add_middleware(HttpMetrics)
    REGISTRY.register(BacklogCollector(get_store().redis, settings.queue_name))
    app.add_api_route("/metrics", metrics_response, include_in_schema=False)
    for error in (RedisConnectionError, RedisTimeoutError, OperationalError):
        app.add_exception_handler(error, _unavailable)
    for module in (jobs, models, health):
        app.include_router(module.router)
    return app


app = create_app()

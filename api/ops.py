"""The ops port: what operators' tools read, off the public surface. `GET /metrics`
(Prometheus), `GET /queue` (the backlog; KEDA's metrics-api trigger reads `in_flight`),
`GET /readyz` (the live workers and every model version's state: the public /readyz says
only ready or not) and `GET /healthz`, on OPS_HOST:OPS_PORT (127.0.0.1:9000 by default; 0
turns it off).

The public app serves it from its lifespan (`serving`): a second uvicorn server in the same
process and event loop, with the same Services and the same Prometheus registry. The
Kubernetes Service of the public port does not expose it (k8s/base/api.yaml), compose does
not publish it, and the NetworkPolicies admit only KEDA and Prometheus to it.
"""

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Generator

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from api import errors
from api.metrics import metrics_response
from api.routes.health import healthz, readiness
from api.services import Services, ServicesDep
from shared.settings import Settings

log = logging.getLogger("api.ops")
SHUTDOWN_GRACE_SECONDS = 5  # a scrape in progress at shutdown gets this long to finish


class Backlog(BaseModel):
    queued: int  # waiting, in every lane
    in_flight: int  # taken by a worker, not yet acknowledged (this queue's only)
    total: int
    lanes: dict[str, int]  # waiting, per lane (high, normal, low)


async def queue(svc: ServicesDep) -> Backlog:
    """Backlog: jobs waiting in the queue, and delivered to a worker but not yet done.
    KEDA's metrics-api trigger reads `in_flight` here (see k8s/base/keda.yaml)."""
    return Backlog(**await svc.store.backlog(svc.settings.queue_name))


def create_app() -> FastAPI:
    """The ops app; `serving` gives it the public app's Services. No documentation pages:
    its routes are in the README."""
    app = FastAPI(title="Queue inference: ops", openapi_url=None, docs_url=None, redoc_url=None)
    app.add_api_route("/metrics", metrics_response)
    app.add_api_route("/queue", queue)
    app.add_api_route("/healthz", healthz)
    # What serves where (worker names, versions, load errors): here, not on the public port.
    app.add_api_route("/readyz", readiness)
    errors.install(app)  # Redis down: 503 + Retry-After, a problem, as on the public port
    return app


class _Server(uvicorn.Server):
    """A uvicorn server that leaves the process's signals to the public server: it stops
    when the public app's lifespan ends, not on SIGTERM of its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """A listening socket. SO_REUSEPORT: with `uvicorn --workers N` (API_WORKERS) every
    process binds it, as they share the public port, and the kernel spreads connections
    among them (each process has its own /metrics, as before)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.asynccontextmanager
async def serving(services: Services, settings: Settings) -> AsyncIterator[None]:
    """The ops port is served while this is entered (nothing when OPS_PORT is 0). A port
    that cannot be bound fails the public app's start-up, so the process exits."""
    if not settings.ops_port:
        yield
        return
    app = create_app()
    app.state.services = services
    sock = bind(settings.ops_host, settings.ops_port)
    # log_config=None: the process's logging stays as it is. access_log=False: uvicorn's own
    # access lines are off (process-wide); api.access_log writes the public port's.
    server = _Server(uvicorn.Config(app, lifespan="off", log_config=None, access_log=False,
                                    timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    log.info("ops port on http://%s:%d (/metrics, /queue, /healthz, /readyz)", settings.ops_host, settings.ops_port)
    try:
        yield
    finally:
        server.should_exit = True
        await task

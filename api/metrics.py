"""Prometheus metrics of the API, served at /metrics on the ops port (api/ops.py)."""

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.responses import Response

REQUESTS = Counter("http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds", "HTTP request latency", ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SUBMITTED = Counter("inference_jobs_submitted_total", "Jobs accepted and queued", ["model"])
REJECTED = Counter("inference_jobs_rejected_total", "Submissions refused", ["reason"])
BODIES = Gauge("http_request_bodies_receiving", "Request bodies being received now (MAX_BODIES bounds them)")
LONG_POLLS = Gauge("http_long_polls", "Long-polls (wait=S) held open now, all keys")


class HttpMetrics:
    """ASGI middleware: count and time every request by its route template (not raw path)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = [500]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(scope["method"], route, status[0]).inc()
            LATENCY.labels(scope["method"], route).observe(time.perf_counter() - started)


def metrics_response() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

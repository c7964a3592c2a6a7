"""The queue backlog as a Prometheus gauge: jobs waiting in the queue list, and delivered to
a worker but not yet acknowledged (kombu's `unacked` hash, which a plain list-length
autoscaler misses)."""

from collections.abc import Iterator

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.jobstore import JobStore


class BacklogCollector(Collector):
    """Read at scrape time, so the gauge is never stale."""

    def __init__(self, store: JobStore, queue: str):
        self.store, self.queue = store, queue

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "inference_queue_backlog_jobs", "Jobs queued or in flight (delivered, unacknowledged)",
            labels=["state"],
        )
        try:
            counts = self.store.backlog(self.queue)
            for state in ("queued", "in_flight"):
                gauge.add_metric([state], counts[state])
        except redis.RedisError:
            pass  # no sample rather than a failed scrape
        yield gauge

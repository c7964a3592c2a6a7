"""The queue backlog as Prometheus gauges: jobs waiting in the fair queue's lanes, and
delivered to a worker but not yet acknowledged (its held set, which a plain list-length
autoscaler misses); and the jobs waiting per lane."""

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
        lanes = GaugeMetricFamily(
            "inference_queue_lane_jobs", "Jobs waiting, per lane (high, normal, low; never per key)",
            labels=["lane"],
        )
        try:
            counts = self.store.backlog(self.queue)
            for state in ("queued", "in_flight"):
                gauge.add_metric([state], counts[state])
            for lane, waiting in counts["lanes"].items():
                lanes.add_metric([lane], waiting)
        except redis.RedisError:
            pass  # no sample rather than a failed scrape
        yield gauge
        yield lanes

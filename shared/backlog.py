"""Queue backlog as Redis holds it: waiting in the queue list, and delivered to a worker but
not yet acknowledged (kombu's `unacked` hash, which a plain list-length autoscaler misses)."""

import redis
from prometheus_client.core import GaugeMetricFamily

UNACKED_HASH = "unacked"


def backlog(client: redis.Redis, queue: str) -> dict[str, int]:
    pipe = client.pipeline(transaction=False)
    pipe.llen(queue)
    pipe.hlen(UNACKED_HASH)
    queued, in_flight = pipe.execute()
    return {"queued": queued, "in_flight": in_flight}


class BacklogCollector:
    """Read at scrape time, so the gauge is never stale."""

    def __init__(self, client: redis.Redis, queue: str):
        self.client, self.queue = client, queue

    def collect(self):
        gauge = GaugeMetricFamily(
            "inference_queue_backlog_jobs", "Jobs queued or in flight (delivered, unacknowledged)",
            labels=["state"],
        )
        try:
            for state, value in backlog(self.client, self.queue).items():
                gauge.add_metric([state], value)
        except redis.RedisError:
            pass  # no sample rather than a failed scrape
        yield gauge

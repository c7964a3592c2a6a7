"""Queue backlog as Redis holds it: waiting in the queue list, and delivered to a worker but
not yet acknowledged (kombu's `unacked` hash, which a plain list-length autoscaler misses)."""

import redis
from prometheus_client.core import GaugeMetricFamily

UNACKED_HASH = "unacked"


def backlog_commands(pipe, queue: str):
    """Queue the two reads on a (sync or asyncio) pipeline; pass its results to as_backlog."""
    return pipe.llen(queue).hlen(UNACKED_HASH)


def as_backlog(results: list[int]) -> dict[str, int]:
    queued, in_flight = results
    return {"queued": queued, "in_flight": in_flight, "total": queued + in_flight}


def backlog(client: redis.Redis, queue: str) -> dict[str, int]:
    return as_backlog(backlog_commands(client.pipeline(transaction=False), queue).execute())


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
            counts = backlog(self.client, self.queue)
            for state in ("queued", "in_flight"):
                gauge.add_metric([state], counts[state])
        except redis.RedisError:
            pass  # no sample rather than a failed scrape
        yield gauge

"""What settles a batch: runs it under a lease the heartbeat renews, then, back on the
loop's thread, acknowledges its messages (one round trip: shared.broker.patch.acknowledge)
and has it reported to Flower. kombu's and Celery's objects are only used on that thread;
the model thread only appends to `_finished` and asks the loop to call `settle`."""

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable

from shared.broker.patch import acknowledge, hand_back
from shared.redisconn import NotReplicated
from worker.inference.batch import Ran, parse, run_batch
from worker.inference.reporting import FlowerReport

log = logging.getLogger(__name__)


class Settling:
    def __init__(self, app, settings, report: FlowerReport):
        self.app, self.settings, self.report = app, settings, report
        self.call_soon: Callable[[Callable[[], None]], object] | None = None  # the loop's hub; None: at once
        self._finished: deque = deque()

    def hold(self, requests) -> list:
        """On the model thread, before a batch runs: the requests to run now; the others (jobs
        for a version that is loadable but not loaded here) wait for their load, unacknowledged
        (worker.inference.loads hands them back to the batcher once it is loaded)."""
        serving = self.app.serving
        now, refused = [], set()  # versions that cannot load here: asked once per batch, not per job
        for request in requests:
            item = parse(request.args, _properties(request))
            if item is None or item.model_key in serving.runtime.models or item.model_key in refused:
                now.append(request)
            elif not serving.loads.hold(item.model_key, request):
                refused.add(item.model_key)
                now.append(request)
        return now

    def run(self, requests) -> Ran:
        """On the model thread: run the jobs, record their outcomes (before any ack)."""
        items = [item for item in (parse(r.args, _properties(r)) for r in requests) if item is not None]
        serving, settings = self.app.serving, self.settings
        run = uuid.uuid4().hex
        serving.in_flight[run] = [item.job_id for item in items]  # the heartbeat renews their leases
        serving.runtime.running = {item.model_key for item in items}  # not unloaded under the batch
        try:
            return run_batch(items, serving.store, serving.runtime.models, run=run,
                             lease_seconds=settings.lease_seconds, max_runs=settings.max_job_runs,
                             failed=serving.runtime.failed, max_pixels=settings.max_image_pixels)
        finally:
            del serving.in_flight[run]
            serving.runtime.running = set()

    def ran(self, requests, outcome: "Ran | Exception", started: float) -> None:
        """On the model thread: hand the finished batch back to the loop's thread."""
        self._finished.append((requests, outcome, started))
        if self.call_soon is not None:
            self.call_soon(self.settle)
        else:
            self.settle()

    def settle(self) -> None:
        """On the loop's thread: acknowledge finished batches and send their events."""
        while self._finished:
            requests, outcome, started = self._finished.popleft()
            try:
                if isinstance(outcome, NotReplicated):
                    # REDIS_MIN_REPLICAS_ACKED: the finish is on the primary only. Not acknowledged:
                    # back in the queue, the redelivery finds the jobs finished and acknowledges them.
                    log.warning("finish not replicated (%s): %d messages handed back", outcome, len(requests))
                    hand_back(requests)
                    continue
                acknowledge(requests)
                self.report.ran([r.id for r in requests], outcome, started)
            except Exception:  # the next batches are still settled
                log.exception("could not settle a batch of %d", len(requests))

    def run_now(self, requests) -> None:
        """Eager and direct calls (no loop): run and report on this thread; no messages."""
        started = time.time()
        self.report.ran([r.id for r in requests], self.run(requests), started)


def _properties(request) -> dict | None:
    """The message's properties (its lane rides there), when the request has a message."""
    message = getattr(request, "message", None)
    return getattr(message, "properties", None)

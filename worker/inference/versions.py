"""The worker's side of model versions without restarts (shared.catalog): a thread that
follows the announced changes and MODEL_DIR, and has the runtime load, warm, switch and
unload versions accordingly, while the model thread goes on serving.

Every MODEL_POLL_SECONDS it reads `models:epoch`; every MODEL_SCAN_SECONDS it rescans
MODEL_DIR. On a new epoch or a scan that finds the folder set changed, it reads the
defaults and MODEL_DIR again and syncs the runtime (worker.inference.runtime.Runtime.refresh). A
change it is the first to find on disk it announces, so the API processes follow at once.
"""

import logging
import threading
import time

import redis
from redis.exceptions import RedisError

from shared import catalog
from worker.inference import metrics
from worker.inference.runtime import Runtime

log = logging.getLogger(__name__)


class VersionWatcher:
    def __init__(self, runtime: Runtime, client: redis.Redis, poll_seconds: float, scan_seconds: float):
        self.runtime = runtime
        self.client = client
        self.poll_seconds = poll_seconds
        self.scan_seconds = scan_seconds
        self.epoch: int | None = None  # the last epoch followed
        self._next_scan = time.monotonic() + scan_seconds
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="model-versions", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        while not self._stopping.wait(self.poll_seconds):
            try:
                self.check()
            except RedisError as exc:
                log.warning("cannot follow model changes: %s", exc)
            except Exception:  # never let the thread die: the next poll tries again
                log.exception("following model changes failed")

    def check(self) -> bool:
        """Follow a new epoch, or a rescan when one is due; whether anything was read again."""
        now = time.monotonic()
        current = catalog.epoch(self.client)
        scan_due = now >= self._next_scan
        if current == self.epoch and not scan_due:
            return False
        if scan_due:
            self._next_scan = now + self.scan_seconds
        changed = self.runtime.refresh(catalog.defaults(self.client))
        if changed and current == self.epoch:  # found here first: tell the others
            current = catalog.announce(self.client)
            log.info("model versions on disk changed: announced (epoch %d)", current)
        self.epoch = current
        for key, seconds in self.runtime.load_seconds.items():
            metrics.MODEL_LOAD.labels(key).set(seconds)
        return True

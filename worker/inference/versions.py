"""The worker's side of model versions without restarts: a thread that runs the follower
(shared.catalog.follower) every MODEL_POLL_SECONDS and has the runtime load, warm, switch
and unload versions accordingly (worker.inference.runtime.Runtime.refresh), while the model
thread goes on serving.
"""

import logging
import threading

from shared.catalog import Catalog, Follower
from worker.inference import metrics
from worker.inference.runtime import Runtime


class VersionWatcher:
    def __init__(self, runtime: Runtime, catalog: Catalog, poll_seconds: float, scan_seconds: float,
                 epoch: int | None = None):
        """`epoch`: the one the runtime's first reading of the defaults belongs to."""
        self.runtime = runtime
        self.catalog = catalog
        self.poll_seconds = poll_seconds
        self.follower = Follower(catalog.ops, scan_seconds, epoch)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="model-versions", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        while not self._stopping.wait(self.poll_seconds):
            with self.follower.guarded(logging.WARNING):
                self.check()

    def check(self) -> bool:
        """Follow a new epoch, or rescan when one is due; whether anything was read again."""
        if not self.catalog.follow(self.follower.check(), self.runtime.refresh):
            return False
        for key, seconds in self.runtime.load_seconds.items():
            metrics.MODEL_LOAD.labels(key).set(seconds)
        return True

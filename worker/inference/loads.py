"""On-demand loads, off the model thread: a job for a version this worker has not loaded
waits here (not failed, not run) while a thread of its own loads the version, and the model
thread goes on running batches for the versions that are loaded. Once loaded (or failed),
the jobs that waited go back to the model thread (`resubmit`: the batcher's submit).

What bounds it, so that no key can make a worker load and unload versions back to back:
- only a version the runtime finds loadable is waited for (worker.inference.runtime.Runtime.
  refusal: the model's default, or a version an admin marked); any other fails at once;
- at most one on-demand load starts per `cooldown_seconds` on this worker; a version asked
  for in between waits for the cooldown to pass (its jobs wait with it);
- at most `max_waiting` jobs wait on this worker, all versions together (they hold prefetch
  room: the other tenants' jobs must still be received); beyond, a job fails at once;
- a version with jobs waiting or running is never unloaded (Runtime.busy).

No TensorFlow here: the runtime loads.
"""

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from worker.inference.runtime import Runtime

log = logging.getLogger(__name__)
T = TypeVar("T")


class OnDemand(Generic[T]):
    def __init__(self, runtime: Runtime, cooldown_seconds: float, max_waiting: int):
        self.runtime = runtime
        self.cooldown_seconds = cooldown_seconds
        self.max_waiting = max_waiting
        self.resubmit: Callable[[list[T]], None] = lambda items: None  # set to the batcher's submit
        self.loads = 0  # on-demand loads started by this worker (the bound's witness in tests)
        self._waiting: dict[str, list[T]] = {}  # version key -> its jobs, in arrival order
        self._last_start: float | None = None  # when the last on-demand load started (monotonic)
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        runtime.busy = self.waiting_keys  # never unloaded while jobs wait for them

    def waiting_keys(self) -> set[str]:
        with self._changed:
            return set(self._waiting)

    @property
    def waiting(self) -> int:
        with self._changed:
            return sum(len(items) for items in self._waiting.values())

    def hold(self, key: str, item: T) -> bool:
        """Whether `item` (a job for version `key`, not loaded here) now waits for its load;
        False: it runs at once (then it fails, with the runtime's reason, as the version
        cannot load here: not loadable, failed, unknown, or too many jobs waiting)."""
        if key in self.runtime.models or self.runtime.refusal(key) is not None:
            return False
        with self._changed:
            if sum(len(items) for items in self._waiting.values()) >= self.max_waiting:
                return False  # Runtime.load says why: too many waiting
            self._waiting.setdefault(key, []).append(item)
            self._changed.notify()
        self._start()
        return True

    def stop(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify()

    def _start(self) -> None:
        with self._changed:
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(target=self._loop, name="model-loads", daemon=True)
                self._thread.start()

    def _next(self) -> str | None:
        """The version to load next, once the cooldown allows; None once stopping."""
        with self._changed:
            while not self._stopping:
                if self._waiting:
                    now = time.monotonic()
                    due = now if self._last_start is None else self._last_start + self.cooldown_seconds
                    if due <= now:
                        self._last_start = now
                        return next(iter(self._waiting))  # the version asked for first
                    self._changed.wait(due - now)
                else:
                    self._changed.wait()
            return None

    def _loop(self) -> None:
        while (key := self._next()) is not None:
            self.loads += 1
            try:
                self.runtime.load_now(key)
            except Exception:  # its jobs fail with the runtime's reason; the thread serves on
                log.exception("on-demand load of %s failed", key)
            with self._changed:
                items = self._waiting.pop(key, [])
            # Loaded: they run; failed: they fail with model_unavailable (Runtime.failed says why).
            try:
                self.resubmit(items)
            except Exception:
                log.exception("could not hand %d job(s) for %s back to the model thread", len(items), key)

"""Batches formed on a model thread while the consumer keeps receiving.

The consumer (Celery's event loop) hands over what it receives; the model thread takes a
batch as soon as the model is free and either `max_batch_size` items wait or the oldest
has waited `max_delay` for company. While a batch runs, the consumer goes on receiving, so
under a backlog the next batch is waiting, full, when the model is free (Triton's dynamic
batcher and Ray Serve's @serve.batch work the same way). What a batch did goes back to the
consumer (`done`), which acknowledges its messages: kombu's objects stay on its thread.

No TensorFlow here: `run` is given (worker/inference/tasks.py runs worker.inference.batch.run_batch).
"""

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    def __init__(self, run: Callable[[list[T]], R], done: Callable[[list[T], R | Exception, float], None],
                 max_batch_size: int, max_delay_s: float, hold: Callable[[list[T]], list[T]] | None = None):
        """`run(batch)` on the model thread; then `done(batch, what run returned or raised,
        wall-clock time the batch started)`, also on the model thread (it must hand over).
        `hold(batch)`: the items to run now; it keeps the others (jobs whose model version is
        loading: worker.inference.loads) and submits them again later."""
        self._run = run
        self._hold = hold
        self._done = done
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self._waiting: deque[tuple[float, T]] = deque()  # (when handed over, item)
        self._changed = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.running: list[T] = []  # the batch the model is running

    def start(self) -> None:
        """Start the model thread; one that outlived its stop's timeout serves on (never two)."""
        with self._changed:
            self._stopping = False
            self._changed.notify()
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._loop, name="model", daemon=True)
        self._thread.start()

    def submit(self, items: list[T]) -> None:
        """Hand over items (from the consumer): they join the next batches, oldest first."""
        if not items:
            return
        now = time.monotonic()
        with self._changed:
            self._waiting.extend((now, item) for item in items)
            self._changed.notify()

    def stop(self, timeout: float) -> list[T]:
        """Let the running batch finish (up to `timeout`), start no other; the items that
        were still waiting (never run: their messages go back to the queue)."""
        with self._changed:
            self._stopping = True
            self._changed.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():  # kept: start() lets it serve on rather than add a second
                log.warning("a batch of %d is still running after %.0f s", len(self.running), timeout)
            else:
                self._thread = None
        with self._changed:
            left = [item for _, item in self._waiting]
            self._waiting.clear()
        return left

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _next(self) -> list[T] | None:
        """Block until a batch is due; None once stopping."""
        with self._changed:
            while not self._stopping:
                if self._waiting:
                    due_in = self._waiting[0][0] + self.max_delay_s - time.monotonic()
                    if len(self._waiting) >= self.max_batch_size or due_in <= 0:
                        size = min(len(self._waiting), self.max_batch_size)
                        return [self._waiting.popleft()[1] for _ in range(size)]
                    self._changed.wait(due_in)
                else:
                    self._changed.wait()
            return None

    def _loop(self) -> None:
        while (batch := self._next()) is not None:
            if self._hold is not None:
                try:
                    batch = self._hold(batch)
                except Exception:  # they run, and fail or succeed there: never lost here
                    log.exception("could not set aside a batch's jobs for a loading model")
                if not batch:
                    continue
            self.running = batch
            started = time.time()
            outcome: R | Exception
            try:
                outcome = self._run(batch)
            except Exception as exc:  # reported to `done`; the thread serves on
                log.exception("a batch of %d failed", len(batch))
                outcome = exc
            try:
                self._done(batch, outcome, started)
            except Exception:
                log.exception("could not hand a finished batch back")
            self.running = []

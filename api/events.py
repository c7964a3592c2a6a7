"""Task events for the jobs the API ends itself, so Flower sees every job end: a cached
result never reaches a worker, which sends the events of every other job."""

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from celery import Celery

from shared.broker import INFER_TASK

log = logging.getLogger(__name__)


class TaskEvents:
    def __init__(self, celery: Celery):
        self._celery = celery
        # One thread: kombu's connection is synchronous and not for sharing; events stay in order.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="events")
        self._dispatcher: Any = None

    def cached(self, job_id: str, label: str) -> None:
        """The job was answered from the result cache: received and succeeded, at once."""
        self._executor.submit(self._send, ("task-received", {"name": INFER_TASK, "args": "", "kwargs": ""}),
                              ("task-succeeded", {"result": label, "runtime": 0.0}), job_id=job_id)

    def _send(self, *events: tuple[str, dict], job_id: str) -> None:
        try:
            if self._dispatcher is None:
                self._dispatcher = self._celery.events.Dispatcher(self._celery.connection_for_write())
            for kind, fields in events:
                self._dispatcher.send(kind, uuid=job_id, **fields)
        except Exception as exc:  # monitoring must never fail a request; reconnect next time
            log.warning("could not send task events for %s: %s", job_id, exc)
            self.close_dispatcher()

    def close_dispatcher(self) -> None:
        if self._dispatcher is not None:
            dispatcher, self._dispatcher = self._dispatcher, None
            try:
                dispatcher.close()
                dispatcher.connection.release()
            except Exception as exc:
                log.debug("closing the event dispatcher: %s", exc)

    def close(self) -> None:
        self._executor.submit(self.close_dispatcher)
        self._executor.shutdown(wait=True, cancel_futures=False)

"""Celery task events as Flower receives them, captured from a real Redis."""

import contextlib
import threading
import time

from shared.broker import make_celery
from shared.settings import Settings


class EventCapture:
    """Every task event sent while the capture runs (for up to `seconds`), in `seen`."""

    def __init__(self, redis_url: str, seconds: float = 20):
        self.seen: list[dict] = []
        self._app = make_celery(Settings(redis_url=redis_url), "events-test")
        ready = threading.Event()

        def capture() -> None:
            with self._app.connection_for_read() as connection:
                receiver = self._app.events.Receiver(connection, handlers={"*": self.seen.append})
                ready.set()
                # The timeout ends the capture, or Redis going away once the session ends.
                with contextlib.suppress(Exception):
                    receiver.capture(limit=None, timeout=seconds, wakeup=False)

        threading.Thread(target=capture, daemon=True).start()
        ready.wait(10)
        time.sleep(0.5)  # subscribed before anything is sent

    def of(self, job_id: str) -> list[dict]:
        return [event for event in self.seen if event.get("uuid") == job_id]

    def kinds(self, job_id: str) -> list[str]:
        return [event["type"] for event in self.of(job_id)]

"""The version follower, once: what every API process (api.versions, a task on its event
loop) and every worker (worker.inference.versions, a thread) does to keep its models in step
with MODEL_DIR and the catalog.

Every MODEL_POLL_SECONDS the adapter calls `check`: it reads the epoch, and on a new one
reads the defaults and MODEL_DIR again; every MODEL_SCAN_SECONDS it rescans MODEL_DIR
whatever the epoch. A change of the versions on disk that this process is the first to find
(the epoch is still the one it followed) is announced, so the others follow at once.

The steps are written as generators that yield what they need done, an `Op` to send or a
`Reread` of MODEL_DIR, and get its result back; the faces (shared.catalog.faces) carry them
out, synchronously or on an event loop, so the two adapters cannot disagree. No I/O here.
"""

import contextlib
import logging
import time
from collections.abc import Generator, Iterator
from typing import Any, NamedTuple, TypeVar

from redis.exceptions import RedisError

from shared.catalog.ops import CatalogOps, Reading
from shared.jobstore.replies import Op

log = logging.getLogger(__name__)
T = TypeVar("T")


class Reread(NamedTuple):
    """Read MODEL_DIR again, taking these defaults; the result: whether the versions on disk
    (or their manifests) changed."""

    defaults: dict[str, str]


class Done(NamedTuple):
    """A step that returned, and what."""

    value: Any


Step = Generator[Op[Any] | Reread, Any, T]


def advance(step: Step[Any], reply: Any) -> Op[Any] | Reread | Done:
    """What `step` needs next, given the result of its last need (None at first)."""
    try:
        return step.send(reply)
    except StopIteration as stop:
        return Done(stop.value)


class Follower:
    """The followed epoch and when the next scan is due; the steps that move them on."""

    def __init__(self, ops: CatalogOps, scan_seconds: float, epoch: int | None = None):
        self.ops = ops
        self.scan_seconds = scan_seconds
        self.epoch = epoch  # the last epoch followed (None: none yet)
        self._next_scan = time.monotonic() + scan_seconds

    def check(self) -> Step[bool]:
        """Follow a new epoch, or rescan when a scan is due; whether it read anything again."""
        now = time.monotonic()
        if now >= self._next_scan:
            self._next_scan = now + self.scan_seconds
        elif (yield self.ops.epoch()) == self.epoch:
            return False
        yield from self.refresh()
        return True

    def refresh(self, announce: bool = False) -> Step[bool]:
        """Read the defaults and MODEL_DIR now; announce when asked (an admin's reload) or when
        the versions on disk changed; whether they changed."""
        reading: Reading = yield self.ops.read()
        changed = yield Reread(reading.defaults)
        current = reading.epoch
        if announce or (changed and current == self.epoch):  # found here first: tell the others
            current = yield self.ops.announce()
            log.info("model versions announced (epoch %d)", current)
        self.epoch = current
        return changed

    def set_default(self, name: str, version: str) -> Step[dict[str, str]]:
        """Make `name:version` the default of `name` for every process; the defaults now, for
        this process to take at once."""
        self.epoch = yield self.ops.set_default(name, version)
        defaults: dict[str, str] = yield self.ops.defaults()
        return defaults

    @contextlib.contextmanager
    def guarded(self, redis_level: int) -> Iterator[None]:
        """Around one poll: a failure is logged (Redis unreachable at `redis_level`) and the
        next poll tries again, so the follower never dies."""
        try:
            yield
        except RedisError as exc:
            log.log(redis_level, "cannot follow model changes: %s", exc)
        except Exception:
            log.exception("following model changes failed")

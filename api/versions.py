"""The API's side of model versions without restarts (shared.catalog): keeps this process's
registry in step with MODEL_DIR and the defaults announced through Redis.

A task on the event loop reads `models:epoch` every MODEL_POLL_SECONDS and rescans MODEL_DIR
every MODEL_SCAN_SECONDS (in a thread: it reads files). A new epoch re-reads the defaults and
MODEL_DIR; a change of the versions on disk this process is the first to find is announced,
so the workers load it. The registry is replaced whole (shared.registry), so a request sees
either the old reading or the new one.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared import catalog
from shared.registry import Registry

log = logging.getLogger(__name__)


class Versions:
    def __init__(self, registry: Registry, client: aioredis.Redis, poll_seconds: float, scan_seconds: float):
        self.registry = registry
        self.client = client
        self.poll_seconds = poll_seconds
        self.scan_seconds = scan_seconds
        self.epoch: int | None = None
        self._next_scan = time.monotonic() + scan_seconds
        self._task: asyncio.Task[None] | None = None
        self.on_change: Callable[[], None] = lambda: None  # called when the versions on disk changed

    async def refresh(self, announce: bool = False) -> bool:
        """Read the defaults and MODEL_DIR now; announce when asked (an admin's reload) or when
        the versions on disk changed; whether they changed."""
        current = await catalog.epoch_async(self.client)
        defaults = await catalog.defaults_async(self.client)
        changed = await asyncio.to_thread(self.registry.refresh, defaults)
        if changed:
            self.on_change()
        if announce or (changed and current == self.epoch):
            current = await catalog.announce_async(self.client)
            log.info("model versions announced (epoch %d)", current)
        self.epoch = current
        return changed

    async def set_default(self, name: str, version: str) -> None:
        """Make `name:version` the default of `name` for every process, this one at once."""
        self.epoch = await catalog.set_default_async(self.client, name, version)
        self.registry.set_defaults(await catalog.defaults_async(self.client))

    async def check(self) -> None:
        """Follow a new epoch, or rescan when a scan is due."""
        now = time.monotonic()
        if now >= self._next_scan:
            self._next_scan = now + self.scan_seconds
            await self.refresh()
        elif await catalog.epoch_async(self.client) != self.epoch:
            await self.refresh()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.check()
            except RedisError as exc:
                log.debug("cannot follow model changes: %s", exc)
            except Exception:  # the next poll tries again
                log.exception("following model changes failed")

    async def start(self) -> None:
        with contextlib.suppress(RedisError):  # Redis down at start: the task catches up
            await self.refresh()
        self._task = asyncio.create_task(self._run(), name="model-versions")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.aclose()

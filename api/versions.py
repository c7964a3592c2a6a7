"""The API's side of model versions without restarts: keeps this process's registry in step
with MODEL_DIR and the defaults announced through Redis (shared.catalog).

A task on the event loop runs the follower (shared.catalog.follower) every
MODEL_POLL_SECONDS; MODEL_DIR is read in a thread (it reads files). The registry is replaced
whole (shared.registry), so a request sees either the old reading or the new one.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.exceptions import RedisError

from shared.catalog import AsyncCatalog, Follower
from shared.registry import Registry


class Versions:
    def __init__(self, registry: Registry, catalog: AsyncCatalog, poll_seconds: float, scan_seconds: float):
        self.registry = registry
        self.catalog = catalog
        self.poll_seconds = poll_seconds
        self.follower = Follower(catalog.ops, scan_seconds)
        self._task: asyncio.Task[None] | None = None
        self.on_change: Callable[[], None] = lambda: None  # called when the versions on disk changed

    async def _reread(self, defaults: dict[str, str]) -> bool:
        changed = await asyncio.to_thread(self.registry.refresh, defaults)
        if changed:
            self.on_change()
        return changed

    async def refresh(self, announce: bool = False) -> bool:
        """Read the defaults and MODEL_DIR now; announce when asked (an admin's reload) or when
        the versions on disk changed; whether they changed."""
        return await self.catalog.follow(self.follower.refresh(announce), self._reread)

    async def set_default(self, name: str, version: str) -> None:
        """Make `name:version` the default of `name` for every process, this one at once."""
        self.registry.set_defaults(await self.catalog.follow(self.follower.set_default(name, version), self._reread))

    async def check(self) -> None:
        """Follow a new epoch, or rescan when a scan is due."""
        await self.catalog.follow(self.follower.check(), self._reread)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            with self.follower.guarded(logging.DEBUG):
                await self.check()

    async def start(self) -> None:
        with contextlib.suppress(RedisError):  # Redis down at start: the task catches up
            await self.refresh()
        self._task = asyncio.create_task(self._run(), name="model-versions")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.catalog.close()

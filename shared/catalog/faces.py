"""The two faces of the catalog: `Catalog` (redis-py, synchronous: the workers, the
training worker, the tests) and `AsyncCatalog` (redis.asyncio: the API's event loop). Each
sends the ops of shared.catalog.ops, and carries out the follower's steps
(shared.catalog.follower); nothing else reaches the Redis client."""

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import redis
import redis.asyncio as aioredis

from shared.catalog.follower import Done, Reread, Step, advance
from shared.catalog.ops import SCRIPTS, CatalogOps, Reading
from shared.jobstore import sending
from shared.jobstore.keys import DEFAULT_KEYSPACE, Keyspace
from shared.jobstore.replies import Op
from shared.redisconn import Where, async_client, sync_client

T = TypeVar("T")
C = TypeVar("C", redis.Redis, aioredis.Redis)


def _options(timeout: float) -> dict[str, Any]:
    """A small client of its own for a process that follows the catalog: fails fast."""
    return {"decode_responses": True, "socket_timeout": timeout, "socket_connect_timeout": timeout}


class _Face(Generic[C]):
    def __init__(self, client: C, keys: Keyspace = DEFAULT_KEYSPACE):
        self._redis: C = client
        self.ops = CatalogOps(keys)
        self._scripts: dict[str, Any] = {name: client.register_script(text) for name, text in SCRIPTS.items()}


class Catalog(_Face[redis.Redis]):
    @classmethod
    def connect(cls, url: Where, timeout: float, keys: Keyspace = DEFAULT_KEYSPACE) -> "Catalog":
        return cls(sync_client(url, **_options(timeout)), keys)

    def run(self, op: Op[T]) -> T:
        return sending.run(self._redis, self._scripts, op)

    def follow(self, step: Step[T], reread: Callable[[dict[str, str]], bool]) -> T:
        """Carry out a follower's step: send its ops, have `reread` read MODEL_DIR."""
        reply: Any = None
        while not isinstance(need := advance(step, reply), Done):
            reply = reread(need.defaults) if isinstance(need, Reread) else self.run(need)
        return need.value

    def epoch(self) -> int:
        return self.run(self.ops.epoch())

    def defaults(self) -> dict[str, str]:
        return self.run(self.ops.defaults())

    def read(self) -> Reading:
        return self.run(self.ops.read())

    def loadable(self, key: str) -> bool:
        return self.run(self.ops.loadable(key))

    def mark_loadable(self, key: str, loadable: bool = True) -> bool:
        return self.run(self.ops.mark_loadable(key, loadable))

    def announce(self) -> int:
        return self.run(self.ops.announce())

    def set_default(self, name: str, version: str) -> int:
        return self.run(self.ops.set_default(name, version))

    def pin_default(self, name: str, version: str) -> bool:
        return self.run(self.ops.pin_default(name, version))

    def set_default_if(self, name: str, expected: str | None, version: str) -> bool:
        return self.run(self.ops.set_default_if(name, expected, version))

    def close(self) -> None:
        self._redis.close()


class AsyncCatalog(_Face[aioredis.Redis]):
    @classmethod
    def connect(cls, url: Where, timeout: float, keys: Keyspace = DEFAULT_KEYSPACE) -> "AsyncCatalog":
        return cls(async_client(url, **_options(timeout)), keys)

    async def run(self, op: Op[T]) -> T:
        return await sending.run_async(self._redis, self._scripts, op)

    async def follow(self, step: Step[T], reread: Callable[[dict[str, str]], Awaitable[bool]]) -> T:
        """Carry out a follower's step on the event loop; `reread` reads MODEL_DIR."""
        reply: Any = None
        while not isinstance(need := advance(step, reply), Done):
            reply = await (reread(need.defaults) if isinstance(need, Reread) else self.run(need))
        return need.value

    async def loadable(self, key: str) -> bool:
        return await self.run(self.ops.loadable(key))

    async def mark_loadable(self, key: str, loadable: bool = True) -> bool:
        return await self.run(self.ops.mark_loadable(key, loadable))

    async def close(self) -> None:
        await self._redis.aclose()

"""Event-driven long-poll: one Redis pub/sub subscription per API process wakes every
request waiting on a job the moment a worker (or a cancel) finishes it."""

import asyncio
import logging
from collections import defaultdict

import redis.asyncio as aioredis

from shared.jobstore import FINISHED_CHANNEL

log = logging.getLogger(__name__)


class Waiter:
    def __init__(self, redis_url: str):
        self.redis_url = redis_url
        self._waiting: dict[str, set[asyncio.Future]] = defaultdict(set)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def register(self, job_id: str) -> asyncio.Future:
        """Register *before* reading the job, so a finish between read and wait is not missed."""
        future = asyncio.get_running_loop().create_future()
        self._waiting[job_id].add(future)
        return future

    async def wait(self, job_id: str, future: asyncio.Future, timeout: float) -> None:
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            waiting = self._waiting.get(job_id)
            if waiting is not None:
                waiting.discard(future)
                if not waiting:
                    del self._waiting[job_id]

    def _wake(self, job_ids) -> None:
        for job_id in job_ids:
            for future in self._waiting.get(job_id, ()):
                if not future.done():
                    future.set_result(None)

    async def _listen(self) -> None:
        while True:
            client = aioredis.Redis.from_url(self.redis_url, decode_responses=True)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(FINISHED_CHANNEL)
                    # Anything finished while we were not subscribed: let waiters re-read.
                    self._wake(list(self._waiting))
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._wake(message["data"].split(","))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis gone: retry, waiters fall back to their timeout
                log.warning("job notifications lost (%s); resubscribing", exc)
                self._wake(list(self._waiting))
                await asyncio.sleep(1)
            finally:
                await client.aclose()

"""Event-driven long-poll: one Redis pub/sub subscription per API process wakes every
request waiting on a job the moment a worker (or a cancel) finishes it."""

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable

import redis.asyncio as aioredis

from shared.jobstore import AsyncJobStore
from shared.schemas import Job

log = logging.getLogger(__name__)


class Waiter:
    def __init__(self, redis_url: str, channel: str):
        self.redis_url, self.channel = redis_url, channel
        self._waiting: dict[str, set[asyncio.Future]] = defaultdict(set)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def wait_for_job(self, store: AsyncJobStore, job_id: str, wait: float) -> Job | None:
        """The job once terminal, or as it is when `wait` seconds have passed (None: unknown)."""
        deadline = time.monotonic() + wait
        while deadline > time.monotonic():
            # Registered *before* the read, so a finish between read and wait is not missed.
            future = asyncio.get_running_loop().create_future()
            self._waiting[job_id].add(future)
            try:
                job = await store.get(job_id)
                if job is None or job.status.terminal:
                    return job
                await asyncio.wait_for(future, deadline - time.monotonic())
            except TimeoutError:
                pass
            finally:
                self._forget(job_id, future)
        return await store.get(job_id)

    def _forget(self, job_id: str, future: asyncio.Future) -> None:
        waiting = self._waiting.get(job_id)
        if waiting is not None:
            waiting.discard(future)
            if not waiting:
                del self._waiting[job_id]

    def _wake(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            for future in self._waiting.get(job_id, ()):
                if not future.done():
                    future.set_result(None)

    async def _listen(self) -> None:
        while True:
            client = aioredis.Redis.from_url(self.redis_url, decode_responses=True)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    # Anything finished while we were not subscribed: let waiters re-read.
                    self._wake(list(self._waiting))
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._wake(message["data"].split(","))
            except Exception as exc:
                # Redis gone (or anything else): resubscribe; meanwhile waiters fall back to
                # their timeout. This task must outlive every error, or long-polls go deaf.
                log.warning("job notifications lost (%s); resubscribing", exc)
                self._wake(list(self._waiting))
                await asyncio.sleep(1)
            finally:
                await client.aclose()

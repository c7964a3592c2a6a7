"""Event-driven long-poll: one Redis pub/sub subscription per API process wakes every
request waiting on a job the moment a worker (or a cancel) finishes it."""

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable

from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.jobstore import AsyncJobStore
from shared.redisconn import Where, async_client
from shared.schemas import Job

log = logging.getLogger(__name__)


class Waiter:
    def __init__(self, redis_url: Where, channel: str, timeout: float):
        self.redis_url, self.channel, self.timeout = redis_url, channel, timeout
        self._waiting: dict[str, set[asyncio.Future]] = defaultdict(set)
        self._task: asyncio.Task | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen())

    async def stop(self) -> None:
        """Bounded: a cancellation that lands inside redis-py's own read timeout can be lost,
        so the listener also checks `_stopping` at least every Redis timeout / 4."""
        self._stopping = True
        if self._task:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=self.timeout)

    async def wait_for_job(self, store: AsyncJobStore, job_id: str, wait: float,
                           owner: str | None = None) -> Job | None:
        """The job once terminal, or as it is when `wait` seconds have passed (None: unknown,
        or with `owner`, another owner's: it answers at once, exactly like an unknown id)."""
        deadline = time.monotonic() + wait
        while deadline > time.monotonic():
            # Registered *before* the read, so a finish between read and wait is not missed.
            future = asyncio.get_running_loop().create_future()
            self._waiting[job_id].add(future)
            try:
                job = await store.get(job_id, owner)
                if job is None or job.status.terminal:
                    return job
                await asyncio.wait_for(future, deadline - time.monotonic())
            except TimeoutError:
                pass
            finally:
                self._forget(job_id, future)
        return await store.get(job_id, owner)

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

    def _fail(self, error: Exception) -> None:
        """Every waiting long-poll answers now (503) instead of at the end of its wait."""
        for futures in self._waiting.values():
            for future in futures:
                if not future.done():
                    future.set_exception(error)

    async def _listen(self) -> None:
        while not self._stopping:
            client = async_client(self.redis_url, decode_responses=True, socket_connect_timeout=self.timeout)
            try:
                async with client.pubsub() as pubsub:
                    await asyncio.wait_for(pubsub.subscribe(self.channel), self.timeout)
                    # Anything finished while we were not subscribed: let waiters re-read.
                    self._wake(list(self._waiting))
                    await self._relay(pubsub)
            except Exception as exc:
                # Redis gone, frozen (or anything else): waiting long-polls answer 503 now;
                # resubscribe. This task must outlive every error, or long-polls go deaf.
                log.warning("job notifications lost (%s); resubscribing", exc)
                self._fail(RedisConnectionError(f"job notifications lost: {exc}"))
                await asyncio.sleep(1)
            finally:
                await client.aclose()

    async def _relay(self, pubsub: PubSub) -> None:
        """Wake waiters on each finished-jobs message. A frozen Redis sends nothing and
        closes nothing, so ping it: nothing heard within the Redis timeout raises. (Any
        reply counts: redis-py 8 parses a subscribed connection's pong as a bogus message.)"""
        heard = time.monotonic()
        while not self._stopping:
            await pubsub.ping()
            next_ping = time.monotonic() + self.timeout / 4
            while (left := next_ping - time.monotonic()) > 0:
                message = await pubsub.get_message(timeout=left)
                if message is None:
                    continue
                heard = time.monotonic()
                if message["type"] == "message":
                    self._wake(message["data"].split(","))
            if time.monotonic() - heard > self.timeout:
                raise RedisTimeoutError(f"Redis has not answered for {self.timeout:g} s")

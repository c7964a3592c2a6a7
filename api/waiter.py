"""Event-driven long-poll: one Redis pub/sub subscription per API process wakes every
request waiting on a job the moment a worker (or a cancel) finishes it."""

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Iterable

from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.jobstore import AsyncJobStore
from shared.redisconn import Where, async_client
from shared.schemas import Job

log = logging.getLogger(__name__)
# How long a finish heard is remembered (see wait_for_job's `known`): far longer than the
# moment between a submission's create and its wait, however busy the loop.
RECENT_SECONDS = 10.0


class Waiter:
    def __init__(self, redis_url: Where, channel: str, timeout: float):
        self.redis_url, self.channel, self.timeout = redis_url, channel, timeout
        self._waiting: dict[str, set[asyncio.Future]] = defaultdict(set)
        self._task: asyncio.Task | None = None
        self._stopping = False
        # Jobs whose finish was heard lately, oldest first: bounded by RECENT_SECONDS of finishes.
        self._recent: deque[tuple[float, str]] = deque()
        self._recent_ids: set[str] = set()
        self._subscribed_since: float | None = None  # None while not subscribed: finishes go unheard

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
                           owner: str | None = None, known: Job | None = None) -> Job | None:
        """The job once terminal, or as it is when `wait` seconds have passed (None: unknown,
        or with `owner`, another owner's: it answers at once, exactly like an unknown id).
        `known`: the job as its submission just created it, so the first read is skipped,
        unless its finish was heard already (between the create and this wait)."""
        deadline = time.monotonic() + wait
        while deadline > time.monotonic():
            # Registered *before* the read, so a finish between read and wait is not missed.
            future = asyncio.get_running_loop().create_future()
            self._waiting[job_id].add(future)
            try:
                fresh = known is not None and self._heard_everything_lately() and job_id not in self._recent_ids
                job = known if fresh else await store.get(job_id, owner)
                known = None
                if job is None or job.status.terminal:
                    return job
                await asyncio.wait_for(future, deadline - time.monotonic())
            except TimeoutError:
                pass
            finally:
                self._forget(job_id, future)
        return await store.get(job_id, owner)

    def _heard_everything_lately(self) -> bool:
        """Subscribed without a break for a second or more: every finish since a submission's
        create (milliseconds ago) was heard, or is still to come."""
        return self._subscribed_since is not None and time.monotonic() - self._subscribed_since > 1.0

    def _forget(self, job_id: str, future: asyncio.Future) -> None:
        waiting = self._waiting.get(job_id)
        if waiting is not None:
            waiting.discard(future)
            if not waiting:
                del self._waiting[job_id]

    def _wake(self, job_ids: Iterable[str]) -> None:
        now = time.monotonic()
        while self._recent and self._recent[0][0] < now - RECENT_SECONDS:
            self._recent_ids.discard(self._recent.popleft()[1])
        for job_id in job_ids:
            self._recent.append((now, job_id))
            self._recent_ids.add(job_id)
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
                    self._subscribed_since = time.monotonic()
                    self._wake(list(self._waiting))
                    await self._relay(pubsub)
            except Exception as exc:
                # Redis gone, frozen (or anything else): waiting long-polls answer 503 now;
                # resubscribe. This task must outlive every error, or long-polls go deaf.
                log.warning("job notifications lost (%s); resubscribing", exc)
                self._fail(RedisConnectionError(f"job notifications lost: {exc}"))
                await asyncio.sleep(1)
            finally:
                self._subscribed_since = None
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

"""Large images are decoded off the event loop, in a bounded pool: a few decodes at a time
and a few waiting; beyond that the API answers 503 + Retry-After (busy, not broken) rather
than queueing without bound while every request's memory adds up."""

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from fastapi import status

from api.errors import reject

T = TypeVar("T")
# Fewer pixels than this decode in a few ms: quicker inline than a thread hop.
INLINE_PIXELS = 512 * 512
RETRY_AFTER_SECONDS = 1


class DecodePool:
    def __init__(self, workers: int, backlog: int):
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
        self.capacity = workers + backlog
        self._admitted = 0  # running or waiting; only the event loop's thread changes it

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        if self._admitted >= self.capacity:
            raise reject(status.HTTP_503_SERVICE_UNAVAILABLE, "decoder_busy",
                         "the API is busy decoding other large images; retry shortly", RETRY_AFTER_SECONDS)
        self._admitted += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args))
        finally:
            self._admitted -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

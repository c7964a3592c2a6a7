"""What one key may read: job reads per minute, and long-polls at once.

Reads cost Redis time too (a GET /jobs?status=… page may scan up to 1,000 index entries),
so GET /jobs, GET /jobs/{id} and GET /batches/{id} spend the key's read rate
(READ_RATE_LIMIT_PER_MINUTE, or the key's own): lua/rate.lua on a bucket of its own, apart
from submissions, in one Redis call whatever the number of keys or jobs. Over it: 429 with
Retry-After and the RateLimit-* headers of the read bucket. A full Redis (maxmemory) cannot
record the spend: reads go on unspent then, as they must (submissions get 503).

A long-poll (`wait=S`) holds a request open for up to a minute: each key may hold
MAX_LONG_POLLS_PER_KEY at once on each API process (counted here, in memory), 429 beyond.
A submission's `Prefer: wait` over the cap is answered at once instead (a preference may
be ignored, RFC 7240), so the job it queued is never refused after the fact.
"""

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, status
from redis.exceptions import ResponseError

from api.auth import RATE_PERIOD_SECONDS, Caller, CallerDep, rate_headers
from api.errors import reject
from api.metrics import LONG_POLLS
from api.services import ServicesDep
from shared.apikeys import KeyOps

LONG_POLL_RETRY_AFTER_SECONDS = 1  # a long-poll ends within MAX_WAIT_SECONDS; most much sooner


async def spend_read(caller: CallerDep, svc: ServicesDep) -> Caller:
    """One read of the caller's read rate, or 429 spending nothing (no limit with auth off)."""
    limit = caller.read_rate_limit
    if caller.key_id is None or not limit:
        return caller
    try:
        rate = await svc.store.run(KeyOps(svc.store.keys).rate(caller.key_id, limit, RATE_PERIOD_SECONDS, 1,
                                                                reads=True))
    except ResponseError as exc:  # OutOfMemoryError too
        if "OOM" in str(exc):
            return caller  # a full Redis refuses the rate's write, and reads must go on (the read writes nothing)
        raise
    if not rate.allowed:
        retry_after = max(1, math.ceil(rate.retry_after))
        raise reject(status.HTTP_429_TOO_MANY_REQUESTS, "read_rate_limited",
                     f"over this key's {limit} job reads per minute; retry in {retry_after} s (a long-poll, "
                     "`wait=S`, reads once however long it waits)", retry_after,
                     rate_headers(limit, rate.remaining, rate.reset))
    return caller


# How a read route takes its caller: authenticated (api.door), its read spent.
ReaderDep = Annotated[Caller, Depends(spend_read)]


class LongPolls:
    """Long-polls held per key on this process. Only keys with one open have an entry."""

    def __init__(self) -> None:
        self._held: dict[str | None, int] = {}

    def held(self, key_id: str | None) -> int:
        return self._held.get(key_id, 0)

    @contextmanager
    def hold(self, key_id: str | None, limit: int) -> Iterator[bool]:
        """Whether the key may hold one more (then counted until the block ends). Auth off:
        no cap (one tenant)."""
        if key_id is not None and self.held(key_id) >= limit:
            yield False
            return
        self._held[key_id] = self.held(key_id) + 1
        LONG_POLLS.inc()
        try:
            yield True
        finally:
            LONG_POLLS.dec()
            left = self._held[key_id] - 1
            if left:
                self._held[key_id] = left
            else:
                del self._held[key_id]


long_polls = LongPolls()


@contextmanager
def long_poll(caller: Caller, limit: int) -> Iterator[None]:
    """A GET's `wait`: held for the block, or 429 when the key holds `limit` already."""
    with long_polls.hold(caller.key_id, limit) as allowed:
        if not allowed:
            raise reject(status.HTTP_429_TOO_MANY_REQUESTS, "long_polls",
                         f"this key already holds {limit} long-polls (wait=S) on this API process, its limit; "
                         "wait for one to answer, or poll without wait", LONG_POLL_RETRY_AFTER_SECONDS)
        yield

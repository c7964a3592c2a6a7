"""Where Redis is, and the one way every process connects to it: a plain `REDIS_URL`, or the
primary that Redis Sentinel names (`REDIS_SENTINELS` + `REDIS_MASTER_NAME`), followed across
a failover without a restart.

Every client of the project is built here (the job store's, the catalog's, the API's
long-poll listener, `api.keys`, the key store's helpers); Celery's broker settings come from
`broker_options` (shared.broker.app). A connection made through Sentinel asks a Sentinel for
the primary's address each time it (re)connects, so a reconnect after a failover finds the new
primary; a connection still open to a demoted primary gets READONLY, which redis-py turns into
a ConnectionError (and a reconnect). One pool per client, built once (redis-py#3433:
`master_for` builds a pool per call, so it is never called per request); the Sentinel
manager itself is shared per process.

With `REDIS_MIN_REPLICAS_ACKED` > 0 the writes that acknowledge something (a job's create,
the finish before a worker's ack) are followed by `WAIT n timeout` on the same connection
(`replicated`); fewer replicas than asked raise `NotReplicated`."""

import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as aiosentinel
import redis.sentinel as sentinel
from redis.exceptions import RedisError

from shared.settings import Settings


class NotReplicated(RedisError):
    """WAIT saw fewer replicas take a write than REDIS_MIN_REPLICAS_ACKED within its timeout:
    the write is on the primary, not (yet) confirmed anywhere else."""

    def __init__(self, acked: int, wanted: int):
        super().__init__(f"the write reached {acked} of the {wanted} replicas asked for")
        self.acked, self.wanted = acked, wanted


@dataclass(frozen=True)
class RedisTarget:
    """A plain URL, or Sentinels and the name of the primary they watch (then `url` is
    unused); and how many replicas must take an acknowledged write."""

    url: str = "redis://127.0.0.1:6379/0"
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str = "qi"
    password: str | None = None  # the data nodes' (with Sentinels; a plain URL carries its own)
    sentinel_password: str | None = None
    db: int = 0
    min_replicas: int = 0
    wait_timeout_ms: int = 1000

    @property
    def sentinel_urls(self) -> str:
        """kombu's form: `sentinel://[:password@]host:port;...` (the data password, which kombu
        hands to the primary's connections)."""
        auth = f":{self.password}@" if self.password else ""
        return ";".join(f"sentinel://{auth}{host}:{port}/{self.db}" for host, port in self.sentinels)


Where = str | RedisTarget


def target(settings: Settings) -> RedisTarget:
    """The settings' Redis: Sentinels when REDIS_SENTINELS is set, else REDIS_URL."""
    return RedisTarget(
        url=settings.redis_url, sentinels=tuple(_host_port(s) for s in settings.redis_sentinels),
        master_name=settings.redis_master_name, password=settings.redis_password or None,
        sentinel_password=settings.redis_sentinel_password or None,
        db=int(redis.connection.parse_url(settings.redis_url).get("db", 0)),
        min_replicas=settings.redis_min_replicas_acked, wait_timeout_ms=settings.redis_wait_timeout_ms)


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.strip().rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"REDIS_SENTINELS: expected host:port, got {value!r}")
    return host.strip("[]"), int(port)


def as_target(where: Where) -> RedisTarget:
    return where if isinstance(where, RedisTarget) else RedisTarget(url=where)


def _sentinel_kwargs(t: RedisTarget, options: dict[str, Any]) -> dict[str, Any]:
    kwargs = {k: v for k, v in options.items() if k in ("socket_timeout", "socket_connect_timeout")}
    if t.sentinel_password:
        kwargs["password"] = t.sentinel_password
    return kwargs


_managers: dict[tuple[RedisTarget, float | None], sentinel.Sentinel] = {}
_lock = threading.Lock()


def _manager(t: RedisTarget, options: dict[str, Any]) -> sentinel.Sentinel:
    """One synchronous Sentinel manager per target (and timeout) per process."""
    key = (t, options.get("socket_timeout"))
    with _lock:
        if key not in _managers:
            _managers[key] = sentinel.Sentinel(list(t.sentinels), sentinel_kwargs=_sentinel_kwargs(t, options))
        return _managers[key]


def sync_client(where: Where, **options: Any) -> redis.Redis:
    """A synchronous client of the primary (`options`: redis.Redis' keyword arguments)."""
    t = as_target(where)
    if not t.sentinels:
        return redis.Redis.from_url(t.url, **options)
    return _manager(t, options).master_for(t.master_name, password=t.password, db=t.db, **options)


class BlockingSentinelPool(aiosentinel.SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """The primary's pool through Sentinel that, with every connection busy, makes a caller
    wait for one (up to `timeout`) as the plain URL's BlockingConnectionPool does."""


def async_pool(where: Where, max_connections: int, timeout: float, **options: Any) -> aioredis.ConnectionPool:
    """The API's pool: at most `max_connections`, a caller waiting up to `timeout` for one."""
    t = as_target(where)
    if not t.sentinels:
        return aioredis.BlockingConnectionPool.from_url(t.url, max_connections=max_connections, timeout=timeout,
                                                        **options)
    manager = aiosentinel.Sentinel(list(t.sentinels), sentinel_kwargs=_sentinel_kwargs(t, options))
    return BlockingSentinelPool(t.master_name, manager, max_connections=max_connections, timeout=timeout,
                                password=t.password, db=t.db, **options)


def async_client(where: Where, **options: Any) -> aioredis.Redis:
    """An asynchronous client of the primary with a pool of its own."""
    t = as_target(where)
    if not t.sentinels:
        return aioredis.Redis.from_url(t.url, **options)
    manager = aiosentinel.Sentinel(list(t.sentinels), sentinel_kwargs=_sentinel_kwargs(t, options))
    return manager.master_for(t.master_name, password=t.password, db=t.db, **options)


# WAIT: on the connection that made the write (WAIT counts that connection's writes).

@contextlib.contextmanager
def one_connection(client: redis.Redis) -> Iterator[redis.Redis]:
    single = client.client()
    try:
        yield single
    finally:
        single.close()


@contextlib.asynccontextmanager
async def one_connection_async(client: aioredis.Redis) -> AsyncIterator[aioredis.Redis]:
    single = client.client()
    try:
        yield single
    finally:
        await single.aclose()


def check_replicas(acked: Any, wanted: int) -> None:
    if int(acked) < wanted:
        raise NotReplicated(int(acked), wanted)

"""Model changes announced through Redis, so every API process and worker sees them.

The versions themselves are folders under MODEL_DIR (shared.registry reads them); what
Redis adds:

- `models:defaults`, a hash: model name -> its default version, set by an admin
  (POST /models/{name}/default) or by a training job that activates its version. A model
  with no entry defaults to its newest version.
- `models:epoch`, a counter bumped by every change (a version added or removed, a default
  set): a process that sees a new epoch re-reads MODEL_DIR and the defaults. Reading it is
  one GET, cheap enough to poll every second or two.
- `models:changed`, a pub/sub channel carrying the new epoch, for processes that would
  rather be told than poll (a missed message is caught by the next poll).

Who follows: every worker (worker.inference.versions, polling the epoch every second and rescanning
MODEL_DIR every MODEL_SCAN_SECONDS) and every API process (api.versions, the same on its
event loop). Whoever first finds the folder set changed on a scan announces it.

TensorFlow-free: the API, the workers and the training worker all use it.
"""

import redis
import redis.asyncio as aioredis

DEFAULTS_KEY = "models:defaults"
EPOCH_KEY = "models:epoch"
CHANNEL = "models:changed"


def announce(client: redis.Redis) -> int:
    """Tell every process that MODEL_DIR or a default changed; the new epoch."""
    epoch = int(client.incr(EPOCH_KEY))
    client.publish(CHANNEL, epoch)
    return epoch


def epoch(client: redis.Redis) -> int:
    return int(client.get(EPOCH_KEY) or 0)


def set_default(client: redis.Redis, name: str, version: str) -> int:
    """Make `version` the default of model `name` (a rollback is the same call); announced."""
    client.hset(DEFAULTS_KEY, name, version)
    return announce(client)


def pin_default(client: redis.Redis, name: str, version: str) -> bool:
    """Make `version` the default of `name` only if none is set (so that a newer version does
    not take the name by being newest); whether it did. Announced when it did."""
    if client.hsetnx(DEFAULTS_KEY, name, version):
        announce(client)
        return True
    return False


def set_default_if(client: redis.Redis, name: str, expected: str | None, version: str) -> bool:
    """Make `version` the default of `name` if the default is still `expected` (None: none
    set); whether it did. Announced when it did. A compare-and-set: a default changed in
    between (an admin's POST /models/{name}/default) is never undone."""
    for _ in range(5):  # the watch also trips on other models' defaults: read again
        with client.pipeline() as pipe:
            try:
                pipe.watch(DEFAULTS_KEY)
                current = pipe.hget(DEFAULTS_KEY, name)
                if (_text(current) if current is not None else None) != expected:
                    return False
                pipe.multi()
                pipe.hset(DEFAULTS_KEY, name, version)
                pipe.execute()
            except redis.WatchError:
                continue
        announce(client)
        return True
    return False


def defaults(client: redis.Redis) -> dict[str, str]:
    """Model name -> default version, for the models an admin or a training job set."""
    return {_text(k): _text(v) for k, v in client.hgetall(DEFAULTS_KEY).items()}


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def connect(url: str, timeout: float) -> redis.Redis:
    """A small client of its own for a process that follows the catalog (fails fast)."""
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout)


def connect_async(url: str, timeout: float) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, decode_responses=True, socket_timeout=timeout,
                                   socket_connect_timeout=timeout)


# The same for the API's event loop.

async def announce_async(client: aioredis.Redis) -> int:
    epoch_now = int(await client.incr(EPOCH_KEY))
    await client.publish(CHANNEL, epoch_now)
    return epoch_now


async def epoch_async(client: aioredis.Redis) -> int:
    return int(await client.get(EPOCH_KEY) or 0)


async def set_default_async(client: aioredis.Redis, name: str, version: str) -> int:
    await client.hset(DEFAULTS_KEY, name, version)
    return await announce_async(client)


async def defaults_async(client: aioredis.Redis) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in (await client.hgetall(DEFAULTS_KEY)).items()}

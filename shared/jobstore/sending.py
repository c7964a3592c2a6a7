"""How an `Op` goes over the wire, for every face that sends ops (the job store's and the
catalog's, sync and async): a script by EVALSHA, a pipeline of plain commands, or one
command; then its parse, and the next op a parse may ask for (a first read that named the
keys of a script).

`run_replicated` / `run_replicated_async`: the same, on one connection, then `WAIT n
timeout` on that connection (WAIT counts the writes of the connection it is sent on), with
no reconnect in between (a reconnect would make WAIT count nothing); retried whole, if at
all (an attempt cut short by a failover is sent again on a new connection)."""

from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.jobstore.replies import Op
from shared.redisconn import check_replicas

T = TypeVar("T")


def send(client: redis.Redis, scripts: dict[str, Any], op: Op[Any]) -> Any:
    if op.script:  # a Script: EVALSHA, and its text on NOSCRIPT (a new primary has no script cache)
        return scripts[op.script](keys=op.keys, args=op.args, client=client)
    if op.commands:
        pipe = client.pipeline(transaction=False)
        for command in op.commands:
            pipe.execute_command(*command)
        return pipe.execute()
    return client.execute_command(*op.args)


def run(client: redis.Redis, scripts: dict[str, Any], op: Op[T]) -> T:
    result = op.parse(send(client, scripts, op))
    while isinstance(result, Op):  # a first read named the keys of the next op
        result = result.parse(send(client, scripts, result))
    return result


def run_replicated(client: redis.Redis, scripts: dict[str, Any], op: Op[T], replicas: int, timeout_ms: int,
                   retry: Retry | None = None) -> T:
    """`run`, then WAIT for `replicas` replicas (NotReplicated when fewer took it in time)."""

    def attempt() -> T:
        single = client.client()
        try:
            conn = single.connection
            assert conn is not None
            saved, conn.retry = conn.retry, Retry(NoBackoff(), 0)
            try:
                result = run(single, scripts, op)
                acked = single.execute_command("WAIT", replicas, timeout_ms)
            finally:
                conn.retry = saved
        finally:
            single.close()
        check_replicas(acked, replicas)
        return result

    return retry.call_with_retry(attempt, lambda _: None) if retry is not None else attempt()


async def send_async(client: aioredis.Redis, scripts: dict[str, Any], op: Op[Any]) -> Any:
    if op.script:
        return await scripts[op.script](keys=op.keys, args=op.args, client=client)
    if op.commands:
        pipe = client.pipeline(transaction=False)
        for command in op.commands:
            pipe.execute_command(*command)
        return await pipe.execute()
    return await client.execute_command(*op.args)


async def run_async(client: aioredis.Redis, scripts: dict[str, Any], op: Op[T]) -> T:
    result = op.parse(await send_async(client, scripts, op))
    while isinstance(result, Op):
        result = result.parse(await send_async(client, scripts, result))
    return result


async def run_replicated_async(client: aioredis.Redis, scripts: dict[str, Any], op: Op[T], replicas: int,
                               timeout_ms: int) -> T:
    """`run_async`, then WAIT (the API: no retries, a failover is a 503)."""
    single = client.client()
    try:
        await single.initialize()
        conn = single.connection
        assert conn is not None
        saved, conn.retry = conn.retry, AsyncRetry(NoBackoff(), 0)
        try:
            result = await run_async(single, scripts, op)
            acked = await single.execute_command("WAIT", replicas, timeout_ms)
        finally:
            conn.retry = saved
    finally:
        await single.aclose()
    check_replicas(acked, replicas)
    return result

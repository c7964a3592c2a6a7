"""How an `Op` goes over the wire, for every face that sends ops (the job store's and the
catalog's, sync and async): a script by EVALSHA, a pipeline of plain commands, or one
command; then its parse, and the next op a parse may ask for (a first read that named the
keys of a script)."""

from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis

from shared.jobstore.replies import Op

T = TypeVar("T")


def send(client: redis.Redis, scripts: dict[str, Any], op: Op[Any]) -> Any:
    if op.script:
        return scripts[op.script](keys=op.keys, args=op.args)
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


async def send_async(client: aioredis.Redis, scripts: dict[str, Any], op: Op[Any]) -> Any:
    if op.script:
        return await scripts[op.script](keys=op.keys, args=op.args)
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

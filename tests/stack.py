"""Temporary shim: the process handles moved to shared.processes (shared with `make run`'s
launcher, shared.stack). Import from there; this module goes once the imports are switched."""

from shared.processes import (
    Api,
    RedisServer,
    Worker,
    free_port,
    redis_binary,
    sample,
    service_env,
    wait_for,
)

__all__ = ["Api", "RedisServer", "Worker", "free_port", "redis_binary", "sample", "service_env", "wait_for"]

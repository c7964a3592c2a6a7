"""What every group of operations shares: the keyspace and retention, and reading the
routing fields of jobs' records before a script that must be given the keys they name."""

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, NamedTuple, TypeVar

from shared.broker.envelopes import WEBHOOK_LANE, WEBHOOK_MEMBER, WebhookHooks
from shared.broker.layout import DOORBELL
from shared.jobstore.keys import Keyspace
from shared.jobstore.records import ROUTE_FIELDS
from shared.jobstore.replies import Op
from shared.schemas import ErrorCode, JobError

T = TypeVar("T")
EXPIRED = JobError(code=ErrorCode.expired, message="the job's deadline (expires_in) passed before it ran")
LOST = JobError(code=ErrorCode.worker_lost,
                message="the job's worker, or its message, was lost while it ran; submit it again")
# A routed script's reply when a routing field changed between the read and the script; the
# read is repeated (fields change at most twice per record, so more means a bug).
STALE, STALE_TRIES = "stale", 5


class Route(NamedTuple):
    """One job as a routed script sees it (lua/_routes.lua)."""

    id: str
    seen: tuple[str, ...]  # its ROUTE_FIELDS as read ('' for none)
    keys: tuple[str, ...]  # record, queued set, active set, batch hook, batch queue, cache entry


def args(**fields: Any) -> tuple[str]:
    """A script's one argument: its named inputs, as JSON (the scripts' headers name them)."""
    return (json.dumps(fields),)


class OpsBase:
    """Holds the keyspace and retention, never a connection."""

    def __init__(self, keys: Keyspace, ttl_seconds: int, cache_ttl_seconds: int = 0,
                 finished_ttl_seconds: int | None = None, hooks: WebhookHooks | None = None):
        """`ttl_seconds`: how long a record lives unfinished; `finished_ttl_seconds` (default
        the same): how long a finished one is kept, compacted, and the listing's window.
        `hooks`: with them, the scripts that end or start jobs queue their webhook deliveries
        themselves (lua/_webhooks.lua); without (tests' stores), none is queued."""
        self.keys, self.ttl, self.cache_ttl = keys, ttl_seconds, cache_ttl_seconds
        self.finished_ttl = finished_ttl_seconds or ttl_seconds
        self.hooks = hooks

    def webhook_keys(self, queue: str, lane: str = WEBHOOK_LANE) -> tuple[str, ...]:
        """The webhook queue's four keys as lua/_webhooks.lua's webhook_push takes them: its
        one owner's list in `lane`, the lane's ring, its state, its Celery list (the doorbell)."""
        return (self.keys.fair_jobs(queue, lane, WEBHOOK_MEMBER), self.keys.fair_ring(queue, lane),
                self.keys.fair_state(queue), queue)

    def _hook_keys(self) -> tuple[str, ...]:
        """webhook_keys of this store's webhook queue; absent keys (never written) without hooks."""
        return self.webhook_keys(self.hooks.queue) if self.hooks else (self.keys.absent,) * 4

    def _hook_args(self) -> dict[str, str] | bool:
        """The scripts' `hooks` input (see lua/_webhooks.lua): templates and the doorbell, or false."""
        if self.hooks is None:
            return False
        return {"completed": self.hooks.completed, "running": self.hooks.running, "doorbell": DOORBELL}

    def _or_absent(self, key: str | None) -> str:
        return key or self.keys.absent

    def _route(self, job_id: str, values: list[str | None]) -> Route:
        queue, owner, batch, batch_queue, cache_key = (value or "" for value in values)
        keys = (self.keys.job(job_id), self.keys.queued(queue) if queue else self.keys.absent,
                self.keys.active(owner) if owner else self.keys.absent,
                self._or_absent(batch), self._or_absent(batch_queue), self._or_absent(cache_key))
        return Route(job_id, tuple(value or "" for value in values), keys)

    def _routed(self, job_ids: Sequence[str], build: Callable[[list[Route]], Op[T]],
                tries: int = STALE_TRIES) -> Op[T]:
        """Read the jobs' routing fields (one pipelined round trip), then send `build(routes)`:
        a script given every key they name, which re-checks them (lua/_routes.lua) and
        answers STALE when one changed in between: then this is done again."""

        def parse(replies: list[list[str | None]]) -> Op[T]:
            op = build([self._route(job_id, values) for job_id, values in zip(job_ids, replies, strict=True)])

            def checked(reply: Any) -> T | Op[T]:
                if reply != STALE:
                    return op.parse(reply)
                if tries <= 1:
                    raise RuntimeError(f"the routing fields of jobs {list(job_ids)} keep changing")
                return self._routed(job_ids, build, tries - 1)

            return replace(op, parse=checked)

        commands = tuple(("HMGET", self.keys.job(job_id), *ROUTE_FIELDS) for job_id in job_ids)
        return Op((), parse, commands=commands)


def route_keys(routes: list[Route]) -> tuple[str, ...]:
    return tuple(key for route in routes for key in route.keys)

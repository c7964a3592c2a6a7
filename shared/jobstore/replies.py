"""What an operation is (`Op`: one round trip and how to read its reply), the Lua scripts
it may run, and the replies callers get back."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Generic, NamedTuple, TypeVar, Union

from shared.schemas import ErrorCode, Job, JobStatus, WebhookEvent

T = TypeVar("T")
_LUA = {path.name.removesuffix(".lua"): path.read_text()
        for path in sorted(resources.files("shared.jobstore").joinpath("lua").iterdir(), key=lambda p: p.name)
        if path.name.endswith(".lua")}  # sorted: every process prepends helpers alike (one SHA per script)
# Helpers (lua/_*.lua) are prepended to each script that calls a function they define (EVAL
# has no imports): _webhooks.lua's batch_ended() to the scripts that end jobs, ...
_HELPERS = {text: re.findall(r"^local function (\w+)\(", text, re.M)
            for name, text in _LUA.items() if name.startswith("_")}
SCRIPTS = {name: "".join(helper for helper, functions in _HELPERS.items()
                         if any(f"{function}(" in text for function in functions)) + text
           for name, text in _LUA.items() if not name.startswith("_")}


@dataclass(frozen=True)
class Op(Generic[T]):
    """One round trip: `script` names a Lua script run with (keys, args); without one,
    `commands` are plain commands sent in one pipeline (`parse` gets their replies), else
    `args` is one plain command.

    `parse` may return another op to send next: a script must be given every key it
    touches, so one whose keys are named by what records hold (a job's queue, owner, batch)
    first reads them, then runs with the keys that read named."""

    args: tuple[Any, ...]
    parse: Callable[[Any], Union[T, "Op[T]"]]
    script: str | None = None
    keys: tuple[str, ...] = ()
    commands: tuple[tuple[Any, ...], ...] = ()


class Replay(NamedTuple):
    """An Idempotency-Key seen before: the job it made, and that request's fingerprint."""

    job_id: str
    fingerprint: str


class Held(NamedTuple):
    """An owner's record budget in use (lua/_held.lua)."""

    records: int  # what Redis holds for it: jobs' records, Idempotency-Keys, batches
    frees_in: int  # seconds until the next of them expires


class Created(NamedTuple):
    """What `create` did: recorded the job (its fields, as stored), replayed an earlier
    request with the same Idempotency-Key, or refused it: the backlog was full, the owner at
    its quota, or at its record budget."""

    fields: dict[str, str] | None = None
    replay: Replay | None = None
    backlog: int | None = None  # jobs queued or in flight, when refused for the backlog
    active: int | None = None  # the owner's jobs queued or running, when refused for its quota
    held: Held | None = None  # what the owner holds, when refused for its record budget


class Started(NamedTuple):
    before: JobStatus | None  # status before the call; None: the record is gone
    runs: bool  # this call leased the job to the run: run it
    ended: ErrorCode | None  # this call failed it instead: expired (deadline) or worker_lost
    webhook_events: list[WebhookEvent]
    input: str | None = None  # the job's encoded pixels, when this call leased it to the run

    @property
    def expired(self) -> bool:
        return self.ended == ErrorCode.expired


class Cancelled(NamedTuple):
    before: JobStatus | None  # status before the call; only `queued` was cancelled
    job: Job | None  # the record after the call
    webhook_events: list[WebhookEvent]  # the events its webhook wants ([] without a webhook)


class Lost(NamedTuple):
    """A queued job whose message Redis lost in delivery: what its new message needs."""

    job_id: str
    model_key: str
    created_at: float

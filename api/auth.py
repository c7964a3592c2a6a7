"""Who is calling: `Authorization: Bearer <API key>` on every route but health and docs,
and each key's submission rate.

api.door authenticates before the body is read, and `CallerDep` takes the key it found:
one Redis round trip, whose answer is kept for at most KEY_CACHE_SECONDS (a revoked key
gets 401 within a second; under load it saves ~0.3 ms of CPU per request, measured);
`admit` spends a key's submission rate (lua/rate.lua) before an upload is decoded. The
queued-jobs quota is enforced when the job is created (create.lua), atomically, so
concurrent submits cannot overshoot it.
"""

import math
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import problem, reject
from api.services import Services, ServicesDep
from shared.apikeys import KEY_PREFIX, ApiKey, KeyOps, allows
from shared.jobstore import Held
from shared.schemas import Priority
from shared.settings import Settings

HOW_TO_GET_A_KEY = ("send `Authorization: Bearer <API key>`; an operator creates keys with "
                    "`python -m api.keys create NAME` (`make run` writes one to .run/api-key)")
RATE_PERIOD_SECONDS = 60
KEY_CACHE_SECONDS = 1.0
KEY_CACHE_SIZE = 10_000  # keys remembered at once; beyond, the cache starts afresh
QUOTA_RETRY_AFTER_SECONDS = 5  # the key's own jobs must finish first: seconds, not a minute

_bearer = HTTPBearer(auto_error=False, description="An API key (`qi_...`)")


@dataclass(frozen=True)
class Caller:
    """The key a request came with. `key_id` None: auth is off (AUTH_DISABLED), so every
    job is everyone's, and no rate or quota applies."""

    key_id: str | None
    name: str = "anonymous"
    admin: bool = False
    rate_limit: int = 0  # submissions per minute; 0: none
    read_rate_limit: int = 0  # job reads per minute (api.reads); 0: none
    max_active: int = 0  # queued + running jobs; 0: none
    weight: int = 1  # fair share against the other keys with jobs waiting
    max_priority: Priority = Priority.normal  # the highest lane its jobs may ask for
    max_records: int = 0  # records Redis holds for the key (lua/_held.lua); 0: none

    @classmethod
    def of(cls, key: ApiKey, settings: Settings) -> "Caller":
        return cls(key.id, key.name, key.admin,
                   settings.rate_limit_per_minute if key.rate_limit is None else key.rate_limit,
                   settings.read_rate_limit_per_minute if key.read_rate_limit is None else key.read_rate_limit,
                   settings.max_queued_jobs_per_key if key.max_queued is None else key.max_queued,
                   key.weight, Priority.high if key.admin else key.max_priority,  # an operator's key: any lane
                   settings.max_records_per_key if key.max_records is None else key.max_records)


# Auth off: one tenant, whose jobs may take any lane.
ANONYMOUS = Caller(None, admin=True, max_priority=Priority.high)


class _RecentKeys:
    """Keys that authenticated in the last KEY_CACHE_SECONDS (unknown keys are not kept)."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[float, ApiKey]] = {}

    def get(self, token: str) -> ApiKey | None:
        found = self._keys.get(token)
        if found is None or found[0] < time.monotonic():
            return None
        return found[1]

    def put(self, token: str, key: ApiKey) -> None:
        if len(self._keys) >= KEY_CACHE_SIZE:
            self._keys.clear()
        self._keys[token] = (time.monotonic() + KEY_CACHE_SECONDS, key)


_recent = _RecentKeys()


def _unauthorized_detail(why: str) -> str:
    return f"{why}: {HOW_TO_GET_A_KEY}"


def _unauthorized(why: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, _unauthorized_detail(why),
                         headers={"WWW-Authenticate": "Bearer"})


def unauthorized_problem(why: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The 401 as api.door answers it, before routing: the same problem as `_unauthorized`'s."""
    return problem(status.HTTP_401_UNAUTHORIZED, _unauthorized_detail(why),
                   {"WWW-Authenticate": "Bearer", **(headers or {})})


async def authenticate(svc: Services, token: str) -> ApiKey | None:
    """The key's record, or None for an unknown or revoked key (or one that is no key)."""
    key = _recent.get(token)
    if key is None and token.startswith(KEY_PREFIX):
        key = await svc.store.run(KeyOps(svc.store.keys).authenticate(token))
        if key is not None:
            _recent.put(token, key)
    return key


async def caller(request: Request, svc: ServicesDep,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Caller:
    if svc.settings.auth_disabled:
        return ANONYMOUS
    # api.door authenticated the request before its body was read; it lets no keyed request
    # in without a key, so the fallback below is only a second lock on the same door.
    key: ApiKey | None = getattr(request.state, "api_key", None)
    if key is None:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise _unauthorized("missing API key")
        key = await authenticate(svc, credentials.credentials)
        if key is None:
            raise _unauthorized("unknown or revoked API key")
    request.state.key_id = key.id  # for the access log (never the key itself)
    return Caller.of(key, svc.settings)


CallerDep = Annotated[Caller, Depends(caller)]


def rate_headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
    """The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers)."""
    return {"RateLimit-Limit": str(limit), "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(math.ceil(reset))}


async def admit(caller: Caller, svc: Services, response: Response, cost: int = 1) -> None:
    """Spend `cost` submissions of the caller's rate (a batch: one per file), or 429 with
    Retry-After and RateLimit-* headers, spending nothing. The headers go on every answer."""
    limit = caller.rate_limit
    if caller.key_id is None or not limit:
        return
    if cost > limit:
        raise reject(status.HTTP_429_TOO_MANY_REQUESTS, "rate_limited",
                     f"{cost} files are more than this key's {limit} submissions per minute; send fewer at once")
    rate = await svc.store.run(KeyOps(svc.store.keys).rate(caller.key_id, limit, RATE_PERIOD_SECONDS, cost))
    headers = rate_headers(limit, rate.remaining, rate.reset)
    if not rate.allowed:
        retry_after = max(1, math.ceil(rate.retry_after))
        raise reject(status.HTTP_429_TOO_MANY_REQUESTS, "rate_limited",
                     f"over this key's {limit} submissions per minute; retry in {retry_after} s",
                     retry_after, headers)
    response.headers.update(headers)


def check_priority(caller: Caller, asked: Priority) -> Priority:
    """`asked`, or 403 when it is above the caller's key's max_priority (before anything is
    spent or written: the routes check it with the other options)."""
    if not allows(caller.max_priority, asked):
        raise reject(status.HTTP_403_FORBIDDEN, "priority_not_allowed",
                     f"priority {asked.value} is above this key's highest, {caller.max_priority.value}; "
                     f"send priority {caller.max_priority.value} or lower (an operator raises it with "
                     "`python -m api.keys set NAME --max-priority`)")
    return asked


def over_budget(caller: Caller, held: Held, keep: int, adding: int = 1) -> HTTPException:
    """429 `budget`: the key holds as many records as it may (see lua/_held.lua). They free
    only as they expire, so Retry-After is when the next one does."""
    more = f"; this request needs {adding}" if adding > 1 else ""
    return reject(status.HTTP_429_TOO_MANY_REQUESTS, "budget",
                  f"this key's record budget is spent: it holds {held.records} records in Redis, its limit is "
                  f"{caller.max_records}{more}: "
                  "its jobs count until their records expire (finished ones FINISHED_JOB_TTL_SECONDS = "
                  f"{keep} s after they end), a queued job's Idempotency-Key and its batches too; the next "
                  f"expires in {held.frees_in} s (an operator raises the limit with "
                  "`python -m api.keys set NAME --max-records N`)", held.frees_in)


def over_quota(caller: Caller, active: int) -> HTTPException:
    return reject(status.HTTP_429_TOO_MANY_REQUESTS, "quota",
                  f"this key has {active} jobs queued or running, its limit ({caller.max_active}); "
                  "wait for some to finish", QUOTA_RETRY_AFTER_SECONDS,
                  rate_headers(caller.max_active, 0, QUOTA_RETRY_AFTER_SECONDS))

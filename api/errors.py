"""One error shape for every 4xx/5xx: RFC 9457 problem details, `application/problem+json`,
whose `detail` is always one sentence saying what went wrong and what to do. FastAPI's own
validation errors (list-shaped by default) are reshaped too, with the fields in `errors`."""

import logging

import fastapi
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from api.metrics import REJECTED
from shared.redisconn import NotReplicated
from shared.schemas import FieldError, Problem

log = logging.getLogger("api")
RETRY_AFTER_SECONDS = 2
FULL_RETRY_AFTER_SECONDS = 10  # memory frees as workers finish jobs and records expire
PROBLEM_JSON = "application/problem+json"
# Where FastAPI says a bad value came from; the field name alone says enough.
_SOURCES = {"body", "query", "header", "path", "cookie"}


def problem(status: int, detail: str, headers: dict[str, str] | None = None,
            errors: list[FieldError] | None = None) -> JSONResponse:
    body = Problem.of(status, detail, errors)
    return JSONResponse(body.model_dump(exclude_none=True), status, headers=headers, media_type=PROBLEM_JSON)


def reject(status_code: int, reason: str, detail: str, retry_after: int | None = None,
           headers: dict[str, str] | None = None) -> fastapi.HTTPException:
    """The error for a refused submission, counted by `reason`; `retry_after` (seconds) for
    a refusal that passes (a busy decoder, a full queue, a rate limit)."""
    REJECTED.labels(reason).inc()
    headers = {**(headers or {}), **({"Retry-After": str(retry_after)} if retry_after else {})}
    return fastapi.HTTPException(status_code, detail, headers=headers or None)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    detail = str(exc.detail)
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
        detail = f"{request.method} is not allowed here; use {headers['Allow']}"
    if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):
        # FastAPI's own JSON body parsing (json.loads) recursed too deep: the body is as
        # invalid as JSON that does not parse, which FastAPI answers with 422.
        return problem(422, "the body is nested too deeply to read; no body of this API nests more than a few levels",
                       headers)
    return problem(exc.status_code, detail, headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method the API serves at this path (Starlette names only the first route's),
    from the OpenAPI document, so Allow and the documentation agree: a path the document
    names as it is (/jobs/batch) is matched before templated ones (/jobs/{job_id}), as
    OpenAPI matches paths."""
    path = request.url.path
    paths = request.app.openapi()["paths"]
    if path in paths:
        return sorted(method.upper() for method in paths[path])
    methods: set[str] = set()
    for template, operations in paths.items():
        if compile_path(template)[0].match(path):
            methods |= {method.upper() for method in operations}
    return sorted(methods)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [FieldError(field=".".join(str(p) for p in e["loc"] if p not in _SOURCES) or "request", message=e["msg"])
              for e in exc.errors()]
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return problem(422, detail, errors=errors)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("queue unavailable on %s: %s", request.url.path, exc)
    return problem(503, "the job queue (Redis) is unavailable; retry shortly",
                   {"Retry-After": str(RETRY_AFTER_SECONDS)})


async def _full(request: Request, exc: Exception) -> JSONResponse:
    """Redis refused a write for memory (maxmemory, noeviction): nothing was recorded."""
    log.warning("Redis is full on %s: %s", request.url.path, exc)
    return problem(503, "the job queue (Redis) is full; retry later", {"Retry-After": str(FULL_RETRY_AFTER_SECONDS)})


# A failover in progress, as Redis words it: a demoted primary (READONLY; redis-py's Sentinel
# pool turns it into a ConnectionError, a plain URL does not), a blocked call cut short by the
# role change (UNBLOCKED, celery#7946), a replica without its primary (MASTERDOWN), too few
# replicas for min-replicas-to-write (NOREPLICAS), a node still loading its data (LOADING).
_FAILOVER_ERRORS = ("READONLY", "UNBLOCKED", "MASTERDOWN", "NOREPLICAS", "LOADING")


async def _redis_error(request: Request, exc: Exception) -> JSONResponse:
    """A write refused inside a Lua script comes back as a script error naming OOM."""
    if "OOM command not allowed" in str(exc):
        return await _full(request, exc)
    if isinstance(exc, ReadOnlyError) or any(word in str(exc) for word in _FAILOVER_ERRORS):
        return await _unavailable(request, exc)
    return await _unexpected(request, exc)


async def _not_replicated(request: Request, exc: Exception) -> JSONResponse:
    """REDIS_MIN_REPLICAS_ACKED: the write is on the primary, not confirmed on enough replicas
    in time (README: High availability). The job may exist: a retry with the same
    Idempotency-Key finds it rather than making a second one."""
    log.warning("write not replicated on %s: %s", request.url.path, exc)
    return problem(503, "the job queue could not confirm the write on its replicas in time; the job may exist: "
                        "retry with the same Idempotency-Key", {"Retry-After": str(RETRY_AFTER_SECONDS)})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem(500, "an unexpected error occurred on the server; it is logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for error in (RedisConnectionError, RedisTimeoutError, OperationalError):
        app.add_exception_handler(error, _unavailable)
    app.add_exception_handler(OutOfMemoryError, _full)
    app.add_exception_handler(NotReplicated, _not_replicated)
    app.add_exception_handler(ResponseError, _redis_error)
    app.add_exception_handler(Exception, _unexpected)

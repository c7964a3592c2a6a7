"""FastAPI dependencies, named for what routes take: `options: SubmitOptionsDep`,
`priority: PriorityDep`, `cancel_after: CancelAfterDep`, `files: BatchFilesDep`,
`idempotency_key: IdempotencyKeyDep` (`svc: ServicesDep` is in api.services); and
`declared_fields_only`, which every route runs.

Constraints are declared on the parameters, so FastAPI enforces them (422) and the OpenAPI
document states them. All async: FastAPI runs a sync dependency in its threadpool, a thread
hop per request.
"""

import re
from typing import Annotated, Any

from fastapi import Depends, File, Form, Header, Request, UploadFile, status
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError

from api.auth import Caller, CallerDep, check_priority
from api.errors import reject
from api.services import ServicesDep
from api.submit import SubmitOptions
from shared.schemas import Priority, WebhookEvent
from shared.settings import Settings, get_settings
from shared.webhooks import WebhookRefused, validate_url

MAX_IDEMPOTENCY_KEY = 255
# A deadline past the record's retention could never be reported.
MAX_EXPIRES_IN = get_settings().job_ttl_seconds
MAX_BATCH_FILES = get_settings().max_batch_files
# Comma-separated event names, at least one; spaces around them and empty items are ignored.
# An empty value is as good as absent (FastAPI reads an empty form field as its default).
_EVENT = f"(?:{'|'.join(WebhookEvent)})"
EVENTS_PATTERN = f"^(?:(?: *,)* *{_EVENT} *(?:, *(?:{_EVENT} *)?)*)?$"
# Cancel-After, as Replicate's: a duration (`30s`, `5m`, `1h30m`, `250ms`: up to four
# number+unit parts, summed) or bare seconds (`45`). Bounded digits: no huge numbers to parse.
_NUMBER = r"[0-9]{1,9}(?:\.[0-9]{1,6})?"
_UNIT_SECONDS = {"ms": 0.001, "h": 3600.0, "m": 60.0, "s": 1.0}  # `ms` before `m` in the pattern
_DURATION = rf"{_NUMBER}|(?:{_NUMBER}(?:{'|'.join(_UNIT_SECONDS)})){{1,4}}"
CANCEL_AFTER_PATTERN = f"^(?:{_DURATION})$"
_PART = re.compile(rf"({_NUMBER})({'|'.join(_UNIT_SECONDS)})?")
PRIORITY_DESCRIPTION = ("The job's lane: high, normal (default) or low. Above the key's max_priority (an "
                        "operator's `python -m api.keys set --max-priority`; admin keys: any): 403")


def takes_webhooks(settings: Settings) -> bool:
    """Whether submissions may ask for webhooks: with auth on (each API key signs its jobs'
    deliveries with its own secret), or with auth off where WEBHOOK_SECRET is set."""
    return not settings.auth_disabled or bool(settings.webhook_secret)


def _events(value: str | None) -> list[WebhookEvent]:
    """The names in `value` (EVENTS_PATTERN has checked it); `completed` if absent."""
    names = [item.strip() for item in (value or "").split(",") if item.strip()]
    return [WebhookEvent(name) for name in names] or [WebhookEvent.completed]


def duration_seconds(value: str) -> float:
    """A Cancel-After value as seconds: '1h30m' 5400, '250ms' 0.25, '45' 45. ValueError for
    anything CANCEL_AFTER_PATTERN does not match (the range is the caller's to check)."""
    if re.fullmatch(_DURATION, value) is None:
        raise ValueError(f"{value!r} is not a duration")
    return sum(float(number) * _UNIT_SECONDS[unit or "s"] for number, unit in _PART.findall(value))


async def cancel_after(
    cancel_after: Annotated[str | None, Header(
        description=("As Replicate's: a duration (`30s`, `5m`, `1h30m`, `250ms`) or seconds (`45`), more than "
                     "0 and at most JOB_TTL_SECONDS; sets the deadline as `expires_in` does (both given: the "
                     "earlier). A job not started by then fails with code `expired`; a running one is not "
                     "stopped"),
        json_schema_extra={"pattern": CANCEL_AFTER_PATTERN})] = None,
) -> float | None:
    """The Cancel-After header as seconds (None: absent); 422 naming it when it is bad. The
    pattern is documented, not enforced by FastAPI, so every refusal says the same."""
    if cancel_after is None:
        return None
    try:
        seconds = duration_seconds(cancel_after.strip())
    except ValueError:
        seconds = None
    if seconds is None or not 0 < seconds <= MAX_EXPIRES_IN:
        raise RequestValidationError([{
            "type": "value_error", "loc": ("header", "Cancel-After"),
            "msg": f"{cancel_after!r} is not a duration of more than 0 and at most {MAX_EXPIRES_IN} s "
                   "(JOB_TTL_SECONDS); send e.g. 30s, 5m, 1h30m, 250ms, or seconds (45)"}])
    return seconds


CancelAfterDep = Annotated[float | None, Depends(cancel_after)]


def _priority_form() -> Any:
    return Form(description=PRIORITY_DESCRIPTION)


async def priority_option(caller: CallerDep, priority: Annotated[Priority, _priority_form()] = Priority.normal,
                          ) -> Priority:
    """The `priority` form field of a route with no other submission options (/predict):
    403 above the key's max_priority, before the upload is read or the rate spent."""
    return check_priority(caller, priority)


PriorityDep = Annotated[Priority, Depends(priority_option)]


def check_webhook_url(url: str | None, settings: Settings) -> None:
    """422 when webhooks are off here, or `url` fails the SSRF guard."""
    if not takes_webhooks(settings):
        raise reject(status.HTTP_422_UNPROCESSABLE_CONTENT, "webhooks_off",
                     "webhooks are not configured on this server (AUTH_DISABLED is set and WEBHOOK_SECRET is unset)")
    if not url:
        return
    try:
        validate_url(url, settings.webhook_allowed_hosts)
    except WebhookRefused as exc:
        raise reject(status.HTTP_422_UNPROCESSABLE_CONTENT, "bad_webhook", str(exc)) from exc


async def submit_options(
    svc: ServicesDep,
    caller: CallerDep,
    cancel_after: CancelAfterDep,
    model: Annotated[str | None, Form(
        description="'name' or 'name:version' (GET /models); the default model if absent; unknown: 404")] = None,
    webhook_url: Annotated[str | None, Form(description=(
        "POSTed the signed job record (Standard Webhooks). http or https, port 80 or 443, and not a loopback, "
        "private or otherwise non-global address (WEBHOOK_ALLOWED_HOSTS exempts hosts): else 422. "
        "Signed with the API key's webhook secret (GET /webhooks/secret)"))] = None,
    webhook_events: Annotated[str | None, Form(
        pattern=EVENTS_PATTERN, description="Comma-separated: completed (default), running")] = None,
    expires_in: Annotated[float | None, Form(
        gt=0, le=MAX_EXPIRES_IN, allow_inf_nan=False,
        description="Seconds (at most JOB_TTL_SECONDS); a job still queued then fails with code `expired`")] = None,
    priority: Annotated[Priority, _priority_form()] = Priority.normal,
) -> SubmitOptions:
    """The options every submission takes, checked (422, 403) before any upload is processed."""
    return options_of(svc.settings, model, webhook_url, webhook_events, expires_in, caller=caller,
                      priority=priority, cancel_after=cancel_after)


def options_of(settings: Settings, model: str | None, webhook_url: str | None, webhook_events: str | None,
               expires_in: float | None, *, caller: Caller, priority: Priority = Priority.normal,
               cancel_after: float | None = None) -> SubmitOptions:
    """A submission's options, from a form or a JSON body (api.features), checked (422; 403
    for a priority above the caller's). `expires_in` and the Cancel-After header's seconds
    set one deadline: the earlier."""
    check_priority(caller, priority)
    deadlines = [seconds for seconds in (expires_in, cancel_after) if seconds is not None]
    expires_in = min(deadlines) if deadlines else None
    if webhook_events is not None:
        check_webhook_url(webhook_url, settings)
    if not webhook_url:
        return SubmitOptions(model=model, expires_in=expires_in, priority=priority)
    check_webhook_url(webhook_url, settings)
    return SubmitOptions(model=model, webhook_url=webhook_url, webhook_events=_events(webhook_events),
                         expires_in=expires_in, priority=priority)


SubmitOptionsDep = Annotated[SubmitOptions, Depends(submit_options)]


async def batch_files(
    files: Annotated[list[UploadFile], File(
        min_length=1, max_length=MAX_BATCH_FILES,
        description="Several images, at most MAX_BATCH_FILES (more: 400); one job each, in order")],
) -> list[UploadFile]:
    return files


BatchFilesDep = Annotated[list[UploadFile], Depends(batch_files)]


async def idempotency_key(
    idempotency_key: Annotated[str | None, Header(
        min_length=1, max_length=MAX_IDEMPOTENCY_KEY,
        description="Same key + same request = the same job (200); a different request: 422")] = None,
) -> str | None:
    return idempotency_key


IdempotencyKeyDep = Annotated[str | None, Depends(idempotency_key)]


def _form_fields(dependant: Dependant) -> set[str]:
    """The form fields a route reads: its own and its dependencies' (a few, microseconds)."""
    return {field.alias for field in dependant.body_params}.union(*map(_form_fields, dependant.dependencies))


async def declared_fields_only(request: Request) -> None:
    """A form carries only the fields its route reads (422 names the others): a misspelt
    option is not silently ignored, and the OpenAPI document can say so
    (`additionalProperties: false`). FastAPI has parsed the form already, within the
    route's limits; this reads it from the request's cache."""
    route: Any = request.scope.get("route")
    known = _form_fields(route.dependant) if route is not None else set()
    if not known:
        return
    unknown = sorted(set((await request.form()).keys()) - known)
    if unknown:
        message = f"unknown field; this form takes {', '.join(sorted(known))}"
        raise RequestValidationError([{"type": "extra_forbidden", "loc": ("body", name), "msg": message}
                                      for name in unknown])

"""FastAPI dependencies, named for what routes take: `options: SubmitOptionsDep`,
`files: BatchFilesDep`, `idempotency_key: IdempotencyKeyDep` (`svc: ServicesDep` is in
api.services); and `declared_fields_only`, which every route runs.

Constraints are declared on the parameters, so FastAPI enforces them (422) and the OpenAPI
document states them. All async: FastAPI runs a sync dependency in its threadpool, a thread
hop per request.
"""

from typing import Annotated, Any

from fastapi import Depends, File, Form, Header, Request, UploadFile, status
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError

from api.errors import reject
from api.services import ServicesDep
from api.submit import SubmitOptions
from shared.schemas import WebhookEvent
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


def takes_webhooks(settings: Settings) -> bool:
    """Whether submissions may ask for webhooks: with auth on (each API key signs its jobs'
    deliveries with its own secret), or with auth off where WEBHOOK_SECRET is set."""
    return not settings.auth_disabled or bool(settings.webhook_secret)


def _events(value: str | None) -> list[WebhookEvent]:
    """The names in `value` (EVENTS_PATTERN has checked it); `completed` if absent."""
    names = [item.strip() for item in (value or "").split(",") if item.strip()]
    return [WebhookEvent(name) for name in names] or [WebhookEvent.completed]


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
) -> SubmitOptions:
    """The options every submission takes, checked (422) before any upload is processed."""
    return options_of(svc.settings, model, webhook_url, webhook_events, expires_in)


def options_of(settings: Settings, model: str | None, webhook_url: str | None, webhook_events: str | None,
               expires_in: float | None) -> SubmitOptions:
    """A submission's options, from a form or a JSON body (api.features), checked (422)."""
    if webhook_events is not None:
        check_webhook_url(webhook_url, settings)
    if not webhook_url:
        return SubmitOptions(model=model, expires_in=expires_in)
    check_webhook_url(webhook_url, settings)
    return SubmitOptions(model=model, webhook_url=webhook_url, webhook_events=_events(webhook_events),
                         expires_in=expires_in)


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

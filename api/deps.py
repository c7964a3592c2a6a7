"""FastAPI dependencies, named for what routes take: `svc: ServicesDep`,
`options: SubmitOptionsDep`, `files: BatchFilesDep`, `idempotency_key: IdempotencyKeyDep`.

All async: FastAPI runs a sync dependency in its threadpool, a thread hop per request.
"""

from typing import Annotated

from fastapi import Depends, File, Form, Header, Request, UploadFile, status

from api.services import Services
from api.submit import SubmitOptions
from api.uploads import reject
from shared.schemas import WebhookEvent
from shared.settings import get_settings
from shared.webhooks import WebhookRefused, validate_url

MAX_IDEMPOTENCY_KEY = 255
# A deadline past the record's retention could never be reported.
MAX_EXPIRES_IN = get_settings().job_ttl_seconds
_EVENTS = ", ".join(WebhookEvent)


async def services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(services)]


def _events(value: str | None) -> list[WebhookEvent]:
    names = [item.strip() for item in (value or "").split(",") if item.strip()]
    if value is None:
        return [WebhookEvent.completed]
    if not names or not set(names) <= set(WebhookEvent):
        raise reject(status.HTTP_422_UNPROCESSABLE_CONTENT, "bad_webhook",
                     f"webhook_events must be a comma-separated subset of {_EVENTS}")
    return [WebhookEvent(name) for name in names]


async def submit_options(
    svc: ServicesDep,
    model: Annotated[str | None, Form(description="'name' or 'name:version'; the default model if absent")] = None,
    webhook_url: Annotated[str | None, Form(description="POSTed the signed job record (Standard Webhooks)")] = None,
    webhook_events: Annotated[str | None, Form(description="Comma-separated: completed (default), running")] = None,
    expires_in: Annotated[float | None, Form(
        gt=0, le=MAX_EXPIRES_IN, allow_inf_nan=False,
        description="Seconds (at most JOB_TTL_SECONDS); a job still queued then fails with code `expired`")] = None,
) -> SubmitOptions:
    """The options every submission takes, checked (422) before any upload is processed."""
    if not webhook_url:
        return SubmitOptions(model=model, expires_in=expires_in)
    if not svc.settings.webhook_secret:
        raise reject(status.HTTP_422_UNPROCESSABLE_CONTENT, "webhooks_off",
                     "webhooks are not configured on this server (WEBHOOK_SECRET is unset)")
    try:
        validate_url(webhook_url, svc.settings.webhook_allowed_hosts)
    except WebhookRefused as exc:
        raise reject(status.HTTP_422_UNPROCESSABLE_CONTENT, "bad_webhook", str(exc)) from exc
    return SubmitOptions(model=model, webhook_url=webhook_url, webhook_events=_events(webhook_events),
                         expires_in=expires_in)


SubmitOptionsDep = Annotated[SubmitOptions, Depends(submit_options)]


async def batch_files(
    svc: ServicesDep,
    files: Annotated[list[UploadFile], File(description="Several images; one job each, in order")],
) -> list[UploadFile]:
    """At most MAX_BATCH_FILES files (413 above)."""
    if len(files) > svc.settings.max_batch_files:
        raise reject(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "too_many_files",
                     f"at most {svc.settings.max_batch_files} files per batch; got {len(files)}")
    return files


BatchFilesDep = Annotated[list[UploadFile], Depends(batch_files)]


async def idempotency_key(
    idempotency_key: Annotated[str | None, Header(description="Same key + same request = the same job")] = None,
) -> str | None:
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise reject(status.HTTP_422_UNPROCESSABLE_CONTENT, "bad_idempotency_key",
                     f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    return idempotency_key


IdempotencyKeyDep = Annotated[str | None, Depends(idempotency_key)]

"""The caller's webhook secret: what its jobs' deliveries are signed with (worker/webhooks/app.py)."""

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, HTTPException, Response, status
from pydantic import BaseModel, Field

from api.auth import CallerDep, caller
from api.openapi import problems
from api.services import ServicesDep
from shared.apikeys import KeyOps

router = APIRouter(tags=["webhooks"], dependencies=[Depends(caller)])
_NO_STORE = {"Cache-Control": {"description": "`no-store`: a secret is not cached", "schema": {"type": "string"}}}


class WebhookSecret(BaseModel):
    """The secrets that sign deliveries of this key's jobs (Standard Webhooks)."""

    secret: str = Field(description="The current secret (`whsec_` + base64): every delivery is signed with it")
    previous_secret: str | None = Field(
        None, description="The secret before the last rotation, which signs too until `previous_valid_until`")
    previous_valid_until: datetime | None = Field(
        None, description="When the previous secret stops signing (a rotation + 24 h)")


@router.get("/webhooks/secret", response_model=WebhookSecret,
            responses={200: {"headers": _NO_STORE}, **problems(404, 503, described={
                404: "Auth is off (AUTH_DISABLED): jobs have no owner and are signed with the server's "
                     "WEBHOOK_SECRET, which the API does not reveal"})})
async def webhook_secret(response: Response, svc: ServicesDep, caller: CallerDep) -> WebhookSecret:
    """The caller's webhook secret, to verify its deliveries with; after a rotation
    (`python -m api.keys rotate-webhook-secret NAME`) also the previous one, which keeps
    signing for 24 h, so each delivery carries both signatures meanwhile."""
    if caller.key_id is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "auth is off (AUTH_DISABLED): deliveries are signed with "
                            "the server's WEBHOOK_SECRET, which the API does not reveal")
    key = await svc.store.run(KeyOps(svc.store.keys).get(caller.key_id))
    if key is None:  # revoked since this request was authenticated
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown or revoked API key",
                            headers={"WWW-Authenticate": "Bearer"})
    response.headers["Cache-Control"] = "no-store"
    secrets = key.webhook_secrets()
    previous = len(secrets) > 1
    return WebhookSecret(secret=key.webhook_secret, previous_secret=key.previous_webhook_secret if previous else None,
                         previous_valid_until=datetime.fromtimestamp(key.previous_until, UTC) if previous else None)

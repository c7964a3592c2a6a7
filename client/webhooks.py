"""Verify a webhook delivery (Standard Webhooks) and read the job it carries."""

from collections.abc import Mapping

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from client.errors import QIError
from shared.schemas import Job


class InvalidWebhook(QIError):
    """The signature (or its timestamp) does not check out: do not trust the body."""


def verify_webhook(body: bytes | str, headers: Mapping[str, str], secret: str) -> Job:
    """The job a delivery carries, once its `webhook-signature` is checked against `secret`
    (your key's, from GET /webhooks/secret; `whsec_...`). Raises InvalidWebhook otherwise.
    Deliveries are at least once: dedupe on the `webhook-id` header."""
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        Webhook(secret).verify(body, lowered, json_parse=False)
    except WebhookVerificationError as exc:
        raise InvalidWebhook(str(exc)) from exc
    return Job.model_validate_json(body)

"""Webhook contract: URL checks (SSRF guard), Standard Webhooks signing, retry schedule.

The API validates URLs at submit time; the webhook worker checks what the name resolves
to again right before each delivery, and signs with every configured secret.
"""

import ipaddress
import random
import socket
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

DELIVER_TASK = "webhooks.deliver"
# Cloud metadata endpoints beyond the link-local range.
_METADATA = {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}


class WebhookRefused(ValueError):
    """The URL is invalid, or points somewhere webhooks may not go."""


def _blocked(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
        or ip.is_reserved or ip.is_unspecified or ip in _METADATA
    )


def _target(url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookRefused(f"webhook_url is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise WebhookRefused("webhook_url must be an http:// or https:// URL")
    if not parts.hostname:
        raise WebhookRefused("webhook_url has no host")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _allowed(host: str, port: int, allowed_hosts: list[str]) -> bool:
    return host in allowed_hosts or f"{host}:{port}" in allowed_hosts


def validate_url(url: str, allowed_hosts: list[str]) -> str:
    """Submit-time check: well-formed http(s), and not a literal forbidden address."""
    if len(url) > 2048:
        raise WebhookRefused("webhook_url is longer than 2048 characters")
    host, port = _target(url)
    if _allowed(host, port, allowed_hosts):
        return url
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return url  # a name: checked against what it resolves to, at delivery
    if _blocked(literal):
        raise WebhookRefused(f"webhook_url points to a private or reserved address ({literal})")
    return url


def check_destination(url: str, allowed_hosts: list[str]) -> None:
    """Delivery-time check against every address the host resolves to now."""
    host, port = _target(url)
    if _allowed(host, port, allowed_hosts):
        return
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise WebhookRefused(f"cannot resolve {host}: {exc}") from exc
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if _blocked(ip):
            raise WebhookRefused(f"{host} resolves to {ip}, a private, loopback or reserved address")


def signed_headers(secrets: list[str], msg_id: str, body: str, now: datetime | None = None) -> dict[str, str]:
    """Standard Webhooks headers; one signature per secret so receivers can rotate keys."""
    now = now or datetime.now(UTC)
    signatures = " ".join(Webhook(secret).sign(msg_id, now, body) for secret in secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }


def backoff(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds before attempt `attempt + 1`: exponential with full jitter, or Retry-After."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), cap)
    return random.uniform(0.5, 1.0) * min(cap, base * 2 ** (attempt - 1))


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        return (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
    except (TypeError, ValueError):
        return None

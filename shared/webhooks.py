"""Webhook contract: URL checks (SSRF guard), Standard Webhooks signing, retry schedule.

The API validates URLs at submit time (what a URL says by itself); the webhook worker
resolves the host once per attempt, vets every address, and connects to a vetted one
(check_destination), so a DNS answer that changes in between is never used.
"""

import ipaddress
import logging
import random
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import NamedTuple
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

WEB_PORTS = frozenset({80, 443})  # other ports need a host:port entry in WEBHOOK_ALLOWED_HOSTS
# Cloud metadata endpoints beyond the link-local range.
_METADATA = {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
# Not globally reachable (IANA special-purpose registry), though Python < 3.11.10 says it is.
_SPECIAL = ipaddress.ip_network("192.0.0.0/24")

log = logging.getLogger(__name__)
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


class WebhookRefused(ValueError):
    """The URL is invalid, or points somewhere webhooks may not go."""


class Destination(NamedTuple):
    """Where one delivery attempt may connect: the addresses its host resolved to, vetted."""

    host: str
    port: int
    addresses: list[str]


def blocked(ip: Address) -> bool:
    """Whether webhooks may not go to `ip`: anything not globally routable (loopback, private,
    shared 100.64.0.0/10, link-local, documentation, reserved...), multicast, cloud metadata.
    An IPv4-mapped IPv6 address is judged as its IPv4 address; a 6to4 one as both."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    embedded = ip.sixtofour if isinstance(ip, ipaddress.IPv6Address) else None
    return any(
        not a.is_global or a.is_multicast or a.is_reserved or a in _METADATA or a in _SPECIAL
        for a in (ip, embedded) if a is not None
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


# Named in every refusal a local receiver meets, so that a developer finds the setting.
ALLOW_HINT = "; set WEBHOOK_ALLOWED_HOSTS=host:port to allow a receiver there (e.g. one on localhost)"


def _check_port(port: int) -> None:
    if port not in WEB_PORTS:
        raise WebhookRefused(f"webhook_url port {port} is not allowed (80 and 443 are; "
                             "WEBHOOK_ALLOWED_HOSTS can allow a host:port)")


def _literal(host: str) -> Address | None:
    """The address a host names by itself: an IP literal, or any spelling the C library reads
    as IPv4 (127.1, 2130706433, 0x7f000001, 0177.0.0.1, a trailing dot); None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host.removesuffix(".")))
    except (OSError, ValueError):
        return None


def validate_url(url: str, allowed_hosts: list[str]) -> str:
    """Submit-time check: well-formed http(s), not an address (however spelled) or a
    localhost name that webhooks may not reach, port 80 or 443. Other names are checked
    against what they resolve to, at delivery."""
    if len(url) > 2048:
        raise WebhookRefused("webhook_url is longer than 2048 characters")
    host, port = _target(url)
    if _allowed(host, port, allowed_hosts):
        return url
    literal = _literal(host)
    if literal is not None and blocked(literal):
        raise WebhookRefused(f"webhook_url points to a private or reserved address ({literal}){ALLOW_HINT}")
    name = host.removesuffix(".")
    if name == "localhost" or name.endswith(".localhost"):
        raise WebhookRefused(f"webhook_url points to a loopback name ({host}){ALLOW_HINT}")
    _check_port(port)
    return url


def resolve(host: str, port: int) -> list[str]:
    """Every address the host resolves to now (the system resolver)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise WebhookRefused(f"cannot resolve {host}: {exc}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_destination(url: str, allowed_hosts: list[str], resolver: Resolver = resolve) -> Destination:
    """Delivery-time check: resolve the host once and vet every address it resolves to, then
    the port. The delivery connects to these addresses only. An allowed host is resolved but
    not vetted."""
    host, port = _target(url)
    addresses = resolver(host, port)
    if not addresses:
        raise WebhookRefused(f"{host} resolves to no address")
    if not _allowed(host, port, allowed_hosts):
        for address in addresses:
            if blocked(ipaddress.ip_address(address)):
                # The address goes to the log only: the refusal is stored on the job, where its
                # owner reads it, and an inside address is no business of theirs.
                log.warning("webhook refused: %s resolves to %s, a private, loopback or reserved address",
                            host, address)
                raise WebhookRefused(f"{host} resolves to a private, loopback or reserved address")
        _check_port(port)
    return Destination(host, port, addresses)


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

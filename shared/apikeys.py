"""API keys: who may call the API, with what limits, and each key's webhook secret.

A key is `qi_` + 43 random URL-safe characters (32 bytes). Redis keeps only its SHA-256:

    {qi}:apikey:digest:<sha256 of the key>  -> key id                     (string)
    {qi}:apikey:<key id>                    -> name, created_at,           (hash)
                                               last_used_at, admin,
                                               rate_limit, max_queued,
                                               max_records,
                                               weight, max_priority,
                                               read_rate_limit,
                                               webhook_secret,
                                               previous_webhook_secret,
                                               previous_until, digest_key
    {qi}:apikeys                            -> name -> key id               (hash)
    {qi}:fair:weights                       -> key id -> weight             (hash)

Revoking deletes all of them, so the next request with the key gets 401 (the API caches
a key for at most a second). A key's `weight` is its share of the workers against other
keys with jobs waiting; the fair queue reads it from `fair:weights`, which `create` and
`set` keep in step with the record. The sync `KeyStore` (shared/keystore.py) is for the
CLI (api/keys.py) and tests; the API authenticates with `KeyOps.authenticate`: a read of
the digest entry, then one script.
"""

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import NamedTuple

from shared.jobstore.keys import Keyspace
from shared.jobstore.replies import Op
from shared.schemas import LANES, Priority

KEY_PREFIX = "qi_"
PREVIOUS_SECRET_SECONDS = 24 * 3600  # a rotated webhook secret keeps signing this long
MAX_WEIGHT = 100  # weights 1..100: a key's share is weight / the sum of the waiting keys' weights
_FIELDS = ("id", "name", "created_at", "last_used_at", "admin", "rate_limit", "max_queued",
           "webhook_secret", "previous_webhook_secret", "previous_until", "weight", "max_priority", "read_rate_limit",
           "max_records")


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def allows(max_priority: Priority, asked: Priority) -> bool:
    """Whether a key whose highest priority is `max_priority` may ask for `asked`."""
    return LANES.index(asked) >= LANES.index(max_priority)


def check_weight(weight: int) -> int:
    if not 1 <= weight <= MAX_WEIGHT:
        raise ValueError(f"weight {weight} is not within 1..{MAX_WEIGHT}")
    return weight


@dataclass(frozen=True)
class ApiKey:
    """A key's record (never the key itself)."""

    id: str
    name: str
    created_at: float
    admin: bool = False
    rate_limit: int | None = None  # submissions per minute; None: RATE_LIMIT_PER_MINUTE
    max_queued: int | None = None  # queued + running jobs; None: MAX_QUEUED_JOBS_PER_KEY
    max_records: int | None = None  # records Redis holds for it; None: MAX_RECORDS_PER_KEY
    last_used_at: float | None = None
    webhook_secret: str = ""
    previous_webhook_secret: str = ""
    previous_until: float = 0.0
    weight: int = 1  # fair share against other keys with jobs waiting (1..MAX_WEIGHT)
    max_priority: Priority = Priority.normal  # the highest lane its jobs may ask for (admin keys: any)
    read_rate_limit: int | None = None  # job reads per minute; None: READ_RATE_LIMIT_PER_MINUTE

    def webhook_secrets(self, now: float | None = None) -> list[str]:
        """The secrets deliveries are signed with: the current one, and the previous one for
        PREVIOUS_SECRET_SECONDS after a rotation."""
        keep_previous = self.previous_webhook_secret and (now or time.time()) < self.previous_until
        return [self.webhook_secret, *([self.previous_webhook_secret] if keep_previous else [])]

    @classmethod
    def of(cls, fields: dict[str, str]) -> "ApiKey":
        def number(name: str) -> int | None:
            return int(fields[name]) if fields.get(name) else None

        return cls(id=fields["id"], name=fields["name"], created_at=float(fields["created_at"]),
                   admin=fields.get("admin") == "1", rate_limit=number("rate_limit"),
                   max_queued=number("max_queued"), max_records=number("max_records"),
                   last_used_at=float(fields["last_used_at"]) if fields.get("last_used_at") else None,
                   webhook_secret=fields.get("webhook_secret", ""),
                   previous_webhook_secret=fields.get("previous_webhook_secret", ""),
                   previous_until=float(fields.get("previous_until") or 0),
                   # A key made before fair share has neither: the defaults.
                   weight=number("weight") or 1,
                   max_priority=Priority(fields.get("max_priority") or Priority.normal),
                   read_rate_limit=number("read_rate_limit"))


def parse_key(values: list[str | None] | None) -> ApiKey | None:
    if not values or values[0] is None:
        return None
    return ApiKey.of({name: value for name, value in zip(_FIELDS, values, strict=True) if value is not None})


class Rate(NamedTuple):
    allowed: bool
    retry_after: float  # seconds until the request would be allowed (0 when it was)
    remaining: int  # submissions left now
    reset: float  # seconds until the full limit is available again


class KeyOps:
    """The key operations the API sends (see shared.jobstore.ops for what an Op is)."""

    def __init__(self, keys: Keyspace):
        self.keys = keys

    def authenticate(self, key: str) -> Op[ApiKey | None]:
        """The key's record, its use stamped; None for an unknown or revoked key."""
        entry = self.keys.api_key_digest(digest(key))

        def record(key_id: str | None) -> ApiKey | Op[ApiKey | None] | None:
            # The record's key is named by the digest entry: read it first (lua/authenticate.lua).
            if not key_id:
                return None
            return Op((key_id, *_FIELDS), parse_key, "authenticate", (entry, self.keys.api_key(key_id)))

        return Op(("GET", entry), record)

    def get(self, key_id: str) -> Op[ApiKey | None]:
        return Op(("HMGET", self.keys.api_key(key_id), *_FIELDS), parse_key)

    def rate(self, key_id: str, limit: int, period: float, cost: int, reads: bool = False) -> Op[Rate]:
        """Spend `cost` of the key's `limit` submissions (or, with `reads`, job reads: a bucket
        of their own) per `period` seconds, or nothing when over it (see lua/rate.lua)."""

        def parse(reply: list[str]) -> Rate:
            allowed, wait, remaining, reset = reply
            return Rate(allowed == "1", float(wait), int(remaining), float(reset))

        bucket = self.keys.read_rate(key_id) if reads else self.keys.rate(key_id)
        return Op((limit, period, cost), parse, "rate", (bucket,))

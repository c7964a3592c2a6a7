"""The operator's side of API keys (shared.apikeys holds the record and the API's ops):
`KeyStore` over a synchronous client, for the CLI (api/keys.py) and the tests; `create_key`
for tests and benchmarks; `ensure_dev_key`, `make run`'s development key."""

import os
import secrets
import time
from pathlib import Path
from typing import Any

import redis

from shared.apikeys import (
    PREVIOUS_SECRET_SECONDS,
    ApiKey,
    KeyOps,
    check_weight,
    digest,
    new_key,
    new_webhook_secret,
    parse_key,
)
from shared.jobstore.keys import Keyspace
from shared.redisconn import Where, sync_client
from shared.schemas import Priority


def create_key(redis_url: Where, name: str, **limits: Any) -> tuple[str, str]:
    """A new key on the Redis at `redis_url`, and its id (tests, benchmarks, make run's
    development key)."""
    client = sync_client(redis_url, decode_responses=True)
    try:
        record, key = KeyStore(client, Keyspace()).create(name, **limits)
        return key, record.id
    finally:
        client.close()


def ensure_dev_key(redis_url: Where, path: Path, name: str = "dev") -> bool:
    """`make run`'s development key, in `path` (mode 600): kept while it still works, else a
    new admin key named `name` (replacing one of that name whose file was lost). Whether
    it made a new one."""
    client = sync_client(redis_url, decode_responses=True)
    try:
        store = KeyStore(client, Keyspace())
        if path.exists() and store.authenticate(path.read_text().strip()):
            return False
        store.revoke(name)
        _, key = store.create(name, admin=True)
    finally:
        client.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(key + "\n")
    path.chmod(0o600)  # also when the file existed with other permissions
    return True


class KeyStore:
    """Key management over a synchronous client: the CLI and the webhook worker."""

    def __init__(self, client: redis.Redis, keys: Keyspace):
        self.redis, self.keys, self.ops = client, keys, KeyOps(keys)

    def create(self, name: str, *, rate_limit: int | None = None, max_queued: int | None = None,
               admin: bool = False, weight: int | None = None,
               max_priority: Priority | None = None, read_rate_limit: int | None = None,
               max_records: int | None = None) -> tuple[ApiKey, str]:
        """A new key named `name` (unique); the record and the key, which is shown only now.
        ValueError for a name taken or a weight outside 1..MAX_WEIGHT."""
        if weight is not None:
            check_weight(weight)
        key_id, key = secrets.token_hex(8), new_key()
        record: dict[Any, Any] = {
                  "id": key_id, "name": name, "created_at": repr(time.time()), "admin": "1" if admin else "0",
                  "rate_limit": "" if rate_limit is None else str(rate_limit),
                  "max_queued": "" if max_queued is None else str(max_queued),
                  "read_rate_limit": "" if read_rate_limit is None else str(read_rate_limit),
                  "max_records": "" if max_records is None else str(max_records),
                  "weight": str(weight or 1), "max_priority": (max_priority or Priority.normal).value,
                  "webhook_secret": new_webhook_secret(),
                  # Revoking deletes the digest entry too; the key itself is never kept.
                  "digest_key": self.keys.api_key_digest(digest(key))}
        if not self.redis.hsetnx(self.keys.api_keys, name, key_id):
            raise ValueError(f"a key named {name!r} exists already")
        pipe = self.redis.pipeline()
        pipe.hset(self.keys.api_key(key_id), mapping=record)
        pipe.set(self.keys.api_key_digest(digest(key)), key_id)
        if weight is not None:
            pipe.hset(self.keys.fair_weights, key_id, str(weight))
        pipe.execute()
        return ApiKey.of(record), key

    def set(self, name: str, *, weight: int | None = None, max_priority: Priority | None = None,
            rate_limit: int | None = None, max_queued: int | None = None,
            read_rate_limit: int | None = None, max_records: int | None = None) -> ApiKey:
        """Change the given limits of the key named `name` (KeyError if there is none; ValueError
        for a weight outside 1..MAX_WEIGHT); the others stay. The API sees the change within
        KEY_CACHE_SECONDS; the fair queue reads a new weight from `fair:weights` at once."""
        if weight is not None:
            check_weight(weight)
        key = self.by_name(name)
        if key is None:
            raise KeyError(name)
        given = {"weight": weight, "rate_limit": rate_limit, "max_queued": max_queued,
                 "read_rate_limit": read_rate_limit, "max_records": max_records,
                 "max_priority": max_priority.value if max_priority is not None else None}
        changes: dict[Any, Any] = {field: str(value) for field, value in given.items() if value is not None}
        if changes:
            pipe = self.redis.pipeline()  # MULTI/EXEC: the record and fair:weights change together
            pipe.hset(self.keys.api_key(key.id), mapping=changes)
            if weight is not None:
                pipe.hset(self.keys.fair_weights, key.id, str(weight))
            pipe.execute()
        changed = self.get(key.id)
        if changed is None:  # revoked meanwhile
            raise KeyError(name)
        return changed

    def list(self) -> list[ApiKey]:
        ids = self.redis.hgetall(self.keys.api_keys).values()
        found = [self.get(str(key_id)) for key_id in ids]
        return sorted((key for key in found if key), key=lambda key: key.created_at)

    def get(self, key_id: str) -> ApiKey | None:
        return parse_key(self.redis.execute_command(*self.ops.get(key_id).args))

    def by_name(self, name: str) -> ApiKey | None:
        key_id = self.redis.hget(self.keys.api_keys, name)
        return self.get(str(key_id)) if key_id else None

    def authenticate(self, key: str) -> ApiKey | None:
        key_id = self.redis.get(self.keys.api_key_digest(digest(key)))
        return self.get(str(key_id)) if key_id else None

    def revoke(self, name: str) -> bool:
        """Delete the key named `name` at once; False if there is none."""
        key_id = self.redis.hget(self.keys.api_keys, name)
        if not key_id:
            return False
        digest_key = self.redis.hget(self.keys.api_key(str(key_id)), "digest_key")
        pipe = self.redis.pipeline()
        pipe.delete(self.keys.api_key(str(key_id)), *([digest_key] if digest_key else []))
        pipe.hdel(self.keys.api_keys, name)
        pipe.hdel(self.keys.fair_weights, str(key_id))
        pipe.execute()
        return True

    def rotate_webhook_secret(self, name: str) -> ApiKey:
        """A new webhook secret for the key named `name`; the old one signs too for
        PREVIOUS_SECRET_SECONDS (Standard Webhooks' multiple signatures)."""
        key = self.by_name(name)
        if key is None:
            raise KeyError(name)
        self.redis.hset(self.keys.api_key(key.id), mapping={
            "webhook_secret": new_webhook_secret(), "previous_webhook_secret": key.webhook_secret,
            "previous_until": repr(time.time() + PREVIOUS_SECRET_SECONDS)})
        rotated = self.get(key.id)
        assert rotated is not None
        return rotated

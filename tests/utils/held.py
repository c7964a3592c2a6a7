"""What Redis really holds for an API key, read from the keys themselves (not from the record
budget's own set, lua/_held.lua, which is what is under test)."""

import redis

from shared.jobstore import Keyspace

KEYS = Keyspace()


def held_in_redis(client: redis.Redis, key_id: str) -> dict[str, int]:
    """The key's job records, Idempotency-Keys and batches (a SCAN of the whole keyspace:
    tests and benchmarks only)."""
    jobs = sum(client.hget(name, "owner") == key_id for name in client.scan_iter(KEYS.job("*"), count=1000))
    idem = sum(1 for _ in client.scan_iter(KEYS.idempotency(f"{key_id}:*"), count=1000))
    batches = sum(f'"owner": "{key_id}"' in (client.get(name) or "")
                  for name in client.scan_iter(KEYS.batch("*"), count=1000) if not name.endswith(":hook"))
    return {"jobs": jobs, "idem": idem, "batches": batches}

"""Service processes as the tests start them."""

import uuid
from pathlib import Path

from devstack.processes import Api
from shared.keystore import create_key


def new_key(redis_url: str, **limits) -> tuple[str, str]:
    """An API key with a unique name, and its id; no rate (submissions or reads) or queue limit
    unless given."""
    limits.setdefault("rate_limit", 1_000_000)
    limits.setdefault("max_queued", 0)
    limits.setdefault("max_records", 0)
    limits.setdefault("read_rate_limit", 1_000_000)
    return create_key(redis_url, f"test-{uuid.uuid4().hex[:8]}", **limits)


def start_api(redis_url: str, logdir: Path, **settings) -> Api:
    """An API process with the result cache off unless a test asks for it: tests may then
    submit the same picture twice and still see it inferred. Its client sends a new API key
    (`api.key`, whose id is `api.key_id`)."""
    settings.setdefault("result_cache_ttl_seconds", 0)
    api = Api(redis_url, logdir, **settings)
    api.key, api.key_id = new_key(redis_url)
    api.http.headers["Authorization"] = f"Bearer {api.key}"
    return api

"""Service processes as the tests start them."""

from pathlib import Path

from shared.processes import Api


def start_api(redis_url: str, logdir: Path, **settings) -> Api:
    """An API process with the result cache off unless a test asks for it: tests may then
    submit the same picture twice and still see it inferred."""
    settings.setdefault("result_cache_ttl_seconds", 0)
    return Api(redis_url, logdir, **settings)

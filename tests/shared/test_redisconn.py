"""shared.redisconn: one setting finds Redis through Sentinel; WAIT after the writes that
acknowledge; the failover errors a caller may see are 503s; no NOSCRIPT reaches a caller.
The failover itself under load: tests/devstack/test_sentinels.py."""

import asyncio

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from kombu.transport import redis as kombu_redis
from redis.exceptions import ReadOnlyError, ResponseError

from api import errors
from shared.broker import fair_queues, patch
from shared.broker.app import broker_options, celery_config
from shared.jobstore import AsyncJobStore, JobStore, NewJob, new_job_id, new_record
from shared.redisconn import NotReplicated, RedisTarget, target
from shared.schemas import ErrorCode, JobError
from shared.settings import Settings
from tests.utils import jobs
from tests.utils.samples import DIGITS


def test_a_plain_url_is_used_as_it_is():
    settings = Settings(_env_file=None, redis_url="redis://:pw@h:6380/2")
    assert target(settings) == RedisTarget(url="redis://:pw@h:6380/2", db=2)
    assert broker_options(settings) == ("redis://:pw@h:6380/2", {})


def test_sentinels_give_kombu_its_urls_master_name_and_password():
    settings = Settings(_env_file=None, redis_sentinels="s1:26379, s2:26380", redis_master_name="main",
                        redis_password="data", redis_sentinel_password="watch", redis_url="redis://x/3")
    where = target(settings)
    assert where.sentinels == (("s1", 26379), ("s2", 26380))
    assert (where.master_name, where.password, where.sentinel_password, where.db) == ("main", "data", "watch", 3)
    url, options = broker_options(settings)
    assert url == "sentinel://:data@s1:26379/3;sentinel://:data@s2:26380/3"
    assert options["master_name"] == "main"
    assert options["sentinel_kwargs"]["password"] == "watch"
    config = celery_config(settings)
    assert config["broker_url"] == url
    assert config["broker_transport_options"]["master_name"] == "main"
    assert config["broker_transport_options"]["visibility_timeout"] == settings.visibility_timeout_seconds


def test_a_bad_sentinel_address_is_refused():
    with pytest.raises(ValueError, match="host:port"):
        target(Settings(_env_file=None, redis_sentinels="s1"))


def test_the_kombu_patch_holds_for_the_sentinel_channel(monkeypatch):
    for name in ("QoS", "_brpop_read", "_do_restore_message", "basic_consume"):  # undone after the test
        monkeypatch.setattr(kombu_redis.Channel, name, getattr(kombu_redis.Channel, name))
    monkeypatch.setattr(patch, "_fair", dict(patch._fair))
    patch.install(fair_queues=fair_queues(Settings(_env_file=None)))
    channel = kombu_redis.SentinelChannel
    assert issubclass(channel, kombu_redis.Channel)
    assert channel.QoS is patch.QoS
    assert channel._brpop_read is patch._brpop_read
    assert channel._do_restore_message is patch._do_restore_message
    assert channel.basic_consume is patch._basic_consume


def test_no_noscript_reaches_a_caller_after_the_script_cache_is_gone(redis_server):
    """A promoted replica has no script cache (nor has a restarted Redis): the job store's
    scripts (redis-py Script objects) and the kombu patch's fall back to the script's text."""
    store = JobStore.connect(redis_server.url, ttl_seconds=600, timeout=2)
    client = redis_server.client()
    client.script_flush()
    job_id = jobs.make_job(store).fields["id"]  # the create script
    client.script_flush()
    assert store.get(job_id) is not None
    client.script_flush()
    patch._RECORD(client, ["qi-test-unacked-index", "qi-test-unacked"], ["tag", 1.0, "{}"])
    assert client.hexists("qi-test-unacked", "tag")
    client.delete("qi-test-unacked-index", "qi-test-unacked")

    async def via_the_api() -> None:
        api_store = AsyncJobStore.connect(redis_server.url, ttl_seconds=600, timeout=2)
        client.script_flush()
        assert await api_store.get(job_id) is not None
        await api_store.close()

    asyncio.run(via_the_api())


def test_wait_without_enough_replicas_raises_and_the_job_exists(redis_server):
    """REDIS_MIN_REPLICAS_ACKED with no replica: the create is on the primary, WAIT says 0."""
    where = RedisTarget(url=redis_server.url, min_replicas=1, wait_timeout_ms=50)
    store = JobStore.connect(redis_server.url, ttl_seconds=600, timeout=2)

    async def create() -> str:
        api_store = AsyncJobStore.connect(where, ttl_seconds=600, timeout=2)
        job_id = new_job_id()
        new = NewJob(new_record(DIGITS, job_id, input="AA=="), "", idempotency_key=job_id, fingerprint="f")
        try:
            with pytest.raises(NotReplicated) as raised:
                await api_store.create(new, "inference")
            assert (raised.value.acked, raised.value.wanted) == (0, 1)
            # Its retry with the same Idempotency-Key is a replay, which waits for the replicas too.
            with pytest.raises(NotReplicated):
                await api_store.create(new._replace(fields={**new.fields, "id": new_job_id()}), "inference")
        finally:
            await api_store.close()
        return job_id

    job_id = asyncio.run(create())
    assert store.get(job_id) is not None  # "the job may exist": a retry with its Idempotency-Key finds it
    worker_store = JobStore.connect(where, ttl_seconds=600, timeout=2, retries=1)
    with pytest.raises(NotReplicated):
        worker_store.finish({job_id: JobError(code=ErrorCode.invalid_input, message="x")}, "no-such-run")


@pytest.mark.parametrize("error", [
    NotReplicated(0, 1),
    ReadOnlyError("You can't write against a read only replica."),
    ResponseError("UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)"),
    ResponseError("NOREPLICAS Not enough good replicas to write."),
])
def test_failover_errors_are_503_with_retry_after(error):
    app = FastAPI()
    errors.install(app)

    @app.get("/boom")
    async def boom():
        raise error

    response = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == str(errors.RETRY_AFTER_SECONDS)
    if isinstance(error, NotReplicated):
        assert "Idempotency-Key" in response.json()["detail"]

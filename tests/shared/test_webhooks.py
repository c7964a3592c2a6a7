import json
import random
import time
import uuid
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from shared.apikeys import PREVIOUS_SECRET_SECONDS
from shared.broker.layout import DOORBELL
from shared.jobstore import Keyspace
from shared.keystore import KeyStore
from shared.settings import Settings
from shared.webhooks import (
    WebhookRefused,
    backoff,
    check_destination,
    retry_after_seconds,
    signed_headers,
    validate_url,
)
from tests.utils.jobs import make_job

DAY = 86400
PREDICTION = '{"label": "7", "score": 0.9, "top_k": [{"label": "7", "score": 0.9}]}'
SECRET, OLD = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_" + "c2VjcmV0LW9sZC1zZWNyZXQtb2xkLXNlY3JldA=="


@pytest.mark.parametrize("url", [
    "ftp://example.com/x", "file:///etc/passwd", "http://", "not a url",
    "http://127.0.0.1/x", "http://10.0.0.5/", "http://192.168.1.1/", "http://169.254.169.254/latest/meta-data",
    "http://[::1]:8080/", "http://[fd00:ec2::254]/", "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/",
    "http://224.0.0.1/",
])
def test_submit_time_refusals(url):
    with pytest.raises(WebhookRefused):
        validate_url(url, [])


def test_names_and_allowed_hosts_pass_submit_checks():
    assert validate_url("https://hooks.example.com/in", []) == "https://hooks.example.com/in"
    assert validate_url("http://127.0.0.1:9000/in", ["127.0.0.1:9000"])
    assert validate_url("http://localhost/in", ["localhost"])


def test_delivery_time_check_uses_what_the_name_resolves_to():
    # "localhost" looks harmless as a string; it resolves to loopback.
    with pytest.raises(WebhookRefused, match="resolves to"):
        check_destination("http://localhost:9000/hook", [])
    check_destination("http://localhost:9000/hook", ["localhost:9000"])
    with pytest.raises(WebhookRefused, match="resolves to"):
        check_destination("http://localhost:9001/hook", ["localhost:9000"])  # another port


def test_signatures_verify_with_each_secret_for_rotation():
    body = json.dumps({"id": "abc", "status": "succeeded"})
    headers = signed_headers([SECRET, OLD], "msg_abc_completed", body, datetime.now(UTC))
    assert headers["webhook-id"] == "msg_abc_completed"
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (SECRET, OLD):
        assert Webhook(secret).verify(body, headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace("succeeded", "failed"), headers)


def test_each_key_signs_with_its_own_secret_and_a_rotation_keeps_the_old_one_a_day(redis_server):
    keys = KeyStore(redis_server.client(), Keyspace())
    name = f"test-{uuid.uuid4().hex[:8]}"
    mine, _ = keys.create(name)
    theirs, _ = keys.create(f"{name}-other")
    assert mine.webhook_secrets() == [mine.webhook_secret]
    assert mine.webhook_secret.startswith("whsec_")
    assert mine.webhook_secret != theirs.webhook_secret
    body = json.dumps({"id": "abc", "status": "succeeded"})
    headers = signed_headers(mine.webhook_secrets(), "msg_abc_completed", body)
    assert Webhook(mine.webhook_secret).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(theirs.webhook_secret).verify(body, headers)
    rotated = keys.rotate_webhook_secret(name)
    assert rotated.webhook_secrets() == [rotated.webhook_secret, mine.webhook_secret]
    headers = signed_headers(rotated.webhook_secrets(), "msg_abc_completed", body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (rotated.webhook_secret, mine.webhook_secret):
        assert Webhook(secret).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(theirs.webhook_secret).verify(body, headers)
    # A day later the old secret signs no more.
    assert rotated.webhook_secrets(now=time.time() + PREVIOUS_SECRET_SECONDS + 1) == [rotated.webhook_secret]


def test_backoff_grows_with_jitter_caps_and_honours_retry_after():
    delays = [backoff(n, base=1, cap=30) for n in range(1, 8)]
    assert 0.5 <= delays[0] <= 1
    assert 4 <= delays[3] <= 8
    assert all(d <= 30 for d in delays)
    assert backoff(1, base=1, cap=30, retry_after=12) == 12
    assert backoff(1, base=1, cap=30, retry_after=999) == 30
    assert retry_after_seconds("7") == 7
    assert retry_after_seconds(None) is None


@pytest.mark.parametrize("url", [
    # Not globally routable, though not "private" to older checks.
    "http://100.64.1.1/", "http://192.0.0.8/", "http://198.18.0.1/", "http://[::ffff:100.64.0.1]/",
    "http://[2002:7f00:1::]/",  # 6to4 wrapping 127.0.0.1
    "http://100.100.100.200/",  # cloud metadata
    # Loopback spelled so that it does not look like a dotted quad: decimal, hex, short, octal.
    "http://2130706433/", "http://0x7f000001/", "http://127.1/", "http://0177.0.0.1/", "http://0x7f.1/",
    "http://10.1/", "http://127.0.0.1./",
    # Loopback names (RFC 6761).
    "http://localhost/", "http://localhost./", "http://LocalHost/x", "http://api.localhost/",
    # Ports other than 80 and 443.
    "https://hooks.example.com:22/", "http://hooks.example.com:8080/", "https://8.8.8.8:8443/",
])
def test_submit_time_refuses_non_global_disguised_and_other_ports(url):
    with pytest.raises(WebhookRefused, match="webhook_url"):
        validate_url(url, [])


def test_ports_80_and_443_unless_allowed():
    for url in ("https://hooks.example.com/in", "https://hooks.example.com:443/in", "http://hooks.example.com:80/in",
                "https://8.8.8.8/in"):
        assert validate_url(url, []) == url
    assert validate_url("https://hooks.example.com:8443/in", ["hooks.example.com:8443"])
    assert validate_url("https://hooks.example.com:8444/in", ["hooks.example.com"])  # a bare host: any port
    with pytest.raises(WebhookRefused, match="port 8444"):
        validate_url("https://hooks.example.com:8444/in", ["hooks.example.com:8443"])


def answers(*addresses):
    return lambda host, port: list(addresses)


def test_delivery_time_check_refuses_any_non_global_answer_and_other_ports():
    for inward in ("100.64.1.1", "192.0.0.8", "::ffff:10.0.0.1", "fd00:ec2::254", "224.0.0.1"):
        with pytest.raises(WebhookRefused, match="resolves to"):
            check_destination("https://hooks.example.com/in", [], answers("93.184.215.14", inward))
    with pytest.raises(WebhookRefused, match="port 8080"):
        check_destination("http://hooks.example.com:8080/in", [], answers("93.184.215.14"))
    # What passed is what the delivery connects to.
    both = answers("2606:2800:21f:cb07::1", "93.184.215.14")
    assert check_destination("https://hooks.example.com/in", [], both) == (
        "hooks.example.com", 443, ["2606:2800:21f:cb07::1", "93.184.215.14"])
    # An allowed host is not vetted, but still resolved once.
    allowed = check_destination("http://hooks.test:8080/in", ["hooks.test"], answers("127.0.0.1"))
    assert allowed.addresses == ["127.0.0.1"]


def test_a_refusal_at_delivery_names_the_host_not_the_address_it_resolves_to(caplog):
    """The refusal is stored as the job's webhook.last_error, which its owner reads: the
    inside address a name resolves to goes to the worker's log only."""
    for inward in ("10.1.2.3", "127.0.0.1", "169.254.169.254", "fd00:ec2::254", "::ffff:192.168.7.9"):
        with caplog.at_level("WARNING", "shared.webhooks"), pytest.raises(WebhookRefused) as refused:
            check_destination("https://hooks.example.com/in", [], answers("93.184.215.14", inward))
        assert str(refused.value) == "hooks.example.com resolves to a private, loopback or reserved address"
        assert inward in caplog.text
        caplog.clear()


def test_default_retry_schedule_spans_more_than_a_day(monkeypatch):
    defaults = Settings.model_construct()
    monkeypatch.setattr(random, "uniform", lambda low, high: low)  # every jitter at its shortest
    waits = [backoff(attempt, defaults.webhook_backoff_seconds, defaults.webhook_backoff_max_seconds)
             for attempt in range(1, defaults.webhook_max_attempts)]
    assert sum(waits) > 24 * 3600
    assert waits[0] <= 5  # the first retry still comes soon
    assert max(waits) <= defaults.webhook_backoff_max_seconds


def test_retries_wait_in_redis_until_due_by_its_clock(store, redis_server):
    r = redis_server.client()
    queue = f"hooks-{uuid.uuid4().hex}"
    due, waiting = store.keys.webhook_retries(queue), store.keys.fair_jobs(queue, "low", "-")
    job = make_job(store, webhook_url="https://hooks.example.com/in")
    assert store.schedule_webhook_retry(queue, job.id, "soon", delay=0.3, keep=60, cap=DAY) == 1
    assert store.schedule_webhook_retry(queue, job.id, "later", delay=600, keep=60, cap=DAY) == 1
    assert store.move_due_webhooks(queue, limit=10) == 0
    assert r.llen(waiting) == 0
    time.sleep(0.4)
    assert store.move_due_webhooks(queue, limit=10) == 1
    # Into the webhook queue's low lane (a fair queue: its Celery list holds only a doorbell).
    assert r.lrange(waiting, 0, -1) == ["soon"]
    assert r.lrange(queue, 0, -1) == [DOORBELL]
    assert store.move_due_webhooks(queue, limit=10) == 0  # moved once
    assert r.zrange(due, 0, -1) == ["later"]
    # The record is kept until the last retry is due (and `keep` beyond), past its own TTL.
    assert r.ttl(store.keys.job(job.id)) > 600
    # Nothing is scheduled for a record that is gone.
    assert store.schedule_webhook_retry(queue, "missing", "x", delay=0, keep=60, cap=DAY) == 0
    assert r.zcard(due) == 1


def test_due_retries_move_in_bounded_batches(store, redis_server):
    r = redis_server.client()
    queue = f"hooks-{uuid.uuid4().hex}"
    job = make_job(store, webhook_url="https://hooks.example.com/in")
    for n in range(5):
        store.schedule_webhook_retry(queue, job.id, f"m{n}", delay=0, keep=60, cap=DAY)
    assert [store.move_due_webhooks(queue, limit=2) for _ in range(4)] == [2, 2, 1, 0]
    assert sorted(r.lrange(store.keys.fair_jobs(queue, "low", "-"), 0, -1)) == [f"m{n}" for n in range(5)]
    assert r.hget(store.keys.fair_state(queue), "depth:low") == "5"


def test_retries_never_keep_a_record_past_the_cap_after_its_job_finished(store, redis_server):
    r = redis_server.client()
    queue = f"hooks-{uuid.uuid4().hex}"
    job = make_job(store, webhook_url="https://hooks.example.com/in", cached_result=PREDICTION)  # finished now
    record = store.keys.job(job.id)
    r.expire(record, 10)
    # Due within the cap: scheduled, and the record kept until the cap at most (not `keep` past the retry).
    assert store.schedule_webhook_retry(queue, job.id, "within", delay=50, keep=3600, cap=100) == 1
    assert 50 < r.ttl(record) <= 100
    # Due past the cap: nothing scheduled, nothing extended.
    assert store.schedule_webhook_retry(queue, job.id, "past", delay=101, keep=3600, cap=100) == -1
    assert r.zrange(store.keys.webhook_retries(queue), 0, -1) == ["within"]
    assert r.ttl(record) <= 100


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000/in", "http://localhost:8080/in", "http://10.0.0.5/in"])
def test_a_refused_local_receiver_is_told_which_setting_allows_it(url):
    with pytest.raises(WebhookRefused, match="WEBHOOK_ALLOWED_HOSTS=host:port"):
        validate_url(url, [])

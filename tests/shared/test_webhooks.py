import json
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from shared.webhooks import (
    WebhookRefused,
    backoff,
    check_destination,
    retry_after_seconds,
    signed_headers,
    validate_url,
)

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


def test_backoff_grows_with_jitter_caps_and_honours_retry_after():
    delays = [backoff(n, base=1, cap=30) for n in range(1, 8)]
    assert 0.5 <= delays[0] <= 1
    assert 4 <= delays[3] <= 8
    assert all(d <= 30 for d in delays)
    assert backoff(1, base=1, cap=30, retry_after=12) == 12
    assert backoff(1, base=1, cap=30, retry_after=999) == 30
    assert retry_after_seconds("7") == 7
    assert retry_after_seconds(None) is None

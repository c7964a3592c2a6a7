"""Webhook delivery end to end: API + inference worker + webhook worker + a real receiver.
Each delivery is signed with its job's owner's secret (GET /webhooks/secret); WEBHOOK_SECRET
signs only jobs without an owner (AUTH_DISABLED)."""

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

import worker.webhooks.app as webhook_worker
from devstack.processes import Api, RedisServer, Worker, free_port, wait_for
from shared.broker import make_celery, webhook_message
from shared.jobstore import JobStore, Keyspace
from shared.keystore import KeyStore
from shared.settings import Settings
from tests.utils.jobs import make_job
from tests.utils.processes import new_key, start_api
from tests.utils.samples import heldout_png

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
QUEUE = "webhooks"
TIMEOUT = 2  # WEBHOOK_TIMEOUT_SECONDS here: one attempt's deadline
CELERY = make_celery(Settings(), "tests")  # builds messages only
PREDICTION = '{"label": "7", "score": 0.9, "top_k": [{"label": "7", "score": 0.9}]}'


class Receiver:
    """A webhook receiver on loopback that answers from a script and records every request."""

    def __init__(self, port: int):
        self.port = port
        self.requests: list[dict] = []
        # Per path: (status, headers) answers, or a function that writes the response itself.
        self.script: dict[str, list[tuple[int, dict] | Callable[[BaseHTTPRequestHandler], None]]] = {}
        self.server = None

    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"])).decode()
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                script = receiver.script.get(self.path, [])
                step = script.pop(0) if script else (200, {})
                if callable(step):
                    step(self)
                    return
                code, headers = step
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def to(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]


@dataclass
class Stack:
    server: RedisServer
    api: Api
    receiver: Receiver
    env: dict
    logdir: Path
    sender: Worker | None = None  # the webhook worker (a test replaces it)
    inference: Worker | None = None  # the inference worker (a test stops and restarts it)

    def start_sender(self) -> None:
        self.sender = Worker(self.server.url, self.logdir, app="worker.webhooks.app", **self.env)

    def store(self) -> JobStore:
        return JobStore.connect(self.server.url, ttl_seconds=600, timeout=2)

    def keys(self) -> KeyStore:
        return KeyStore(self.server.client(), Keyspace())

    def client(self) -> tuple[httpx.Client, str]:
        """An API client with a new key of its own, and that key's id."""
        key, key_id = new_key(self.server.url)
        return httpx.Client(base_url=self.api.url, timeout=30, headers={"Authorization": f"Bearer {key}"}), key_id


@pytest.fixture(scope="module")
def stack(tmp_path_factory, logdir):
    """Redis, API, inference worker, webhook worker and a receiver, shared by this module.
    Any port on 127.0.0.1 is allowed; "localhost" is not (the SSRF test relies on that)."""
    server = RedisServer(tmp_path_factory.mktemp("hooks-redis"))
    server.start()
    env = dict(webhook_secret=SECRET, webhook_allowed_hosts="127.0.0.1", webhook_queue=QUEUE,
               webhook_backoff_seconds=0.3, webhook_backoff_max_seconds=1, webhook_max_attempts=6,
               webhook_timeout_seconds=TIMEOUT)
    api = start_api(server.url, logdir, **env)
    receiver = Receiver(free_port())
    receiver.start()
    hooks = Stack(server, api, receiver, env, logdir, inference=Worker(server.url, logdir, **env))
    hooks.start_sender()
    yield hooks
    receiver.stop()
    for process in (hooks.sender, hooks.inference, api):
        if process is not None:
            process.stop()
    server.stop()


@pytest.fixture(scope="module")
def hooks(stack):
    return stack.api, stack.receiver


def delivered(api, job_id, status="delivered", http: httpx.Client | None = None):
    """The job once its webhook has `status`, read with `http` (default: the API's client)."""
    http = http or api.http
    return wait_for(lambda: (j := http.get(f"/jobs/{job_id}").json())["webhook"]["status"] == status and j,
                    30, f"webhook {status}")


def recorded(store: JobStore, job_id: str, status: str):
    """The job (read from Redis) once its webhook has `status`."""
    return wait_for(lambda: (j := store.get(job_id)) and j.webhook and j.webhook.status == status and j,
                    30, f"webhook {status}")


def headers_of(request: dict) -> dict[str, str]:
    return {k.lower(): v for k, v in request["headers"].items()}


def secret_of(http: httpx.Client) -> str:
    response = http.get("/webhooks/secret")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    return response.json()["secret"]


def test_signed_delivery_of_running_and_completed(hooks, digit_png):
    api, receiver = hooks
    secret = secret_of(api.http)
    assert secret.startswith("whsec_")
    assert secret != SECRET
    job = api.submit(digit_png, webhook_url=receiver.url("/in"), webhook_events="running,completed").json()
    delivered(api, job["id"])
    wait_for(lambda: len(receiver.to("/in")) == 2, 10, "both events")
    # Both attempts are recorded on the job a moment after the receiver answered them.
    final = wait_for(lambda: (j := api.http.get(f"/jobs/{job['id']}").json())["webhook"]["attempts"] >= 2 and j,
                     10, "both attempts recorded")
    bodies = []
    for request in receiver.to("/in"):
        headers = headers_of(request)
        assert len(headers["webhook-signature"].split(" ")) == 1
        bodies.append(Webhook(secret).verify(request["body"], headers))  # raises if the signature is wrong
        with pytest.raises(WebhookVerificationError):  # the server-wide secret signs only ownerless jobs
            Webhook(SECRET).verify(request["body"], headers)
        assert headers["webhook-id"] in (f"msg_{job['id']}_running", f"msg_{job['id']}_completed")
    statuses = sorted(b["status"] for b in bodies)
    assert statuses == ["running", "succeeded"]
    done = next(b for b in bodies if b["status"] == "succeeded")
    assert done["id"] == job["id"]
    assert done["result"]["label"] == "7"
    assert all("webhook" not in b for b in bodies), "the delivery state is the record's, not the body's"
    assert final["webhook"]["attempts"] == 2
    assert final["webhook"]["last_status_code"] == 200


def test_a_batch_webhook_fires_once_when_every_job_has_ended(stack, digit_png):
    """One signed event for the whole batch, sent by whichever job ends last (here two runs
    after a cancel), carrying the batch as GET /batches/{id} answers it."""
    api, receiver = stack.api, stack.receiver
    assert stack.inference is not None
    stack.inference.stop()  # nothing runs yet: the cancel below finds its job queued
    files = [("files", (f"{i}.png", heldout_png(i))) for i in (1, 2)] + [("files", ("7.png", digit_png))]
    batch = api.http.post("/jobs/batch", files=files, data={"batch_webhook_url": receiver.url("/batch")}).json()
    assert api.http.delete(f"/jobs/{batch['items'][2]['job']['id']}").status_code == 200
    time.sleep(1)
    assert receiver.to("/batch") == [], "not before every job has ended"
    stack.inference = Worker(stack.server.url, stack.logdir, **stack.env)
    wait_for(lambda: receiver.to("/batch"), 30, "the batch's event")
    time.sleep(1)
    assert len(receiver.to("/batch")) == 1, "exactly one event"
    request = receiver.to("/batch")[0]
    body = Webhook(secret_of(api.http)).verify(request["body"], headers_of(request))
    assert body["id"] == batch["batch_id"]
    assert body["done"] is True
    assert body["counts"]["succeeded"] == 2
    assert body["counts"]["cancelled"] == 1
    assert headers_of(request)["webhook-id"] == f"msg_batch_{batch['batch_id']}"


def test_receiver_down_then_up_gets_it_with_the_same_id(hooks, digit_png):
    api, _ = hooks
    receiver = Receiver(free_port())  # not listening yet
    job = api.submit(digit_png, webhook_url=receiver.url("/late")).json()
    # Nothing listens yet: connection refused, retried with backoff.
    wait_for(lambda: (api.http.get(f"/jobs/{job['id']}").json()["webhook"] or {}).get("attempts", 0) >= 2,
             30, "two failed attempts")
    state = api.http.get(f"/jobs/{job['id']}").json()["webhook"]
    assert state["status"] == "pending"
    assert "Connect" in state["last_error"]
    receiver.script["/late"] = [(503, {"Retry-After": "0"})]  # up, but busy once
    receiver.start()
    try:
        final = delivered(api, job["id"])
    finally:
        receiver.stop()
    ids = {r["headers"]["webhook-id"] for r in receiver.to("/late")}
    assert len(receiver.to("/late")) == 2
    assert ids == {f"msg_{job['id']}_completed"}
    assert final["webhook"]["attempts"] >= 4


def test_410_stops_retries(hooks, digit_png):
    api, receiver = hooks
    receiver.script["/gone"] = [(410, {})]
    job = api.submit(digit_png, webhook_url=receiver.url("/gone")).json()
    final = delivered(api, job["id"], status="disabled")
    assert final["webhook"]["last_status_code"] == 410
    import time

    time.sleep(1.5)
    assert len(receiver.to("/gone")) == 1


def test_other_4xx_is_not_retried(hooks, digit_png):
    api, receiver = hooks
    receiver.script["/bad"] = [(400, {})]
    job = api.submit(digit_png, webhook_url=receiver.url("/bad")).json()
    assert delivered(api, job["id"], status="failed")["webhook"]["attempts"] == 1


def test_ssrf_targets_are_refused(stack, digit_png):
    api = stack.api
    port = free_port()
    for url in ("http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/", "gopher://x/",
                "http://100.64.1.1/", "http://2130706433/", "http://0x7f000001/", "http://127.1/",
                f"http://localhost:{port}/x", "http://localhost./x", "http://example.com:22/"):
        response = api.submit(digit_png, webhook_url=url)
        assert response.status_code == 422, url
    # Only DNS knows where a name leads: a record whose URL names one that resolves to
    # loopback (as if it had passed the submit check) is refused at delivery.
    store = stack.store()
    job = make_job(store, webhook_url="http://localhost/x", cached_result=PREDICTION, owner=api.key_id)
    store.push(QUEUE, [webhook_message(CELERY, QUEUE, job.id, "completed")])
    final = delivered(api, job.id, status="failed")
    assert "resolves to" in final["webhook"]["last_error"]
    assert "127.0.0.1" not in final["webhook"]["last_error"], "an inside address is the log's, not the owner's"


def trickle(seen: dict) -> Callable[[BaseHTTPRequestHandler], None]:
    """A response that never ends its headers: one byte every 0.1 s until the client leaves."""

    def respond(handler: BaseHTTPRequestHandler) -> None:
        start = time.monotonic()
        try:
            handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
            while time.monotonic() - start < 20:
                handler.wfile.write(b"x")
                time.sleep(0.1)
        except OSError:
            seen["cut_after"] = time.monotonic() - start
        handler.close_connection = True

    return respond


def test_a_trickling_receiver_is_cut_off_at_the_deadline(stack, digit_png):
    api, receiver = stack.api, stack.receiver
    seen: dict = {}
    receiver.script["/slow"] = [trickle(seen)]  # then 200
    job = api.submit(digit_png, webhook_url=receiver.url("/slow")).json()
    wait_for(lambda: "cut_after" in seen, TIMEOUT + 8, "the delivery to hang up on the trickle")
    assert seen["cut_after"] < TIMEOUT + 1.5
    final = delivered(api, job["id"])  # the retry gets the 200
    assert final["webhook"]["attempts"] == 2
    assert len(receiver.to("/slow")) == 2


def endless_body(seen: dict, size: int = 256 * 2**20) -> Callable[[BaseHTTPRequestHandler], None]:
    """200 with a body of `size` bytes, written as fast as the client takes it."""

    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(size))
        handler.end_headers()
        sent, chunk = 0, b"x" * 2**16
        try:
            while sent < size:
                handler.wfile.write(chunk)
                sent += len(chunk)
        except OSError:
            pass
        seen["sent"] = sent
        handler.close_connection = True

    return respond


def test_a_huge_response_is_not_read_past_the_cap(stack, digit_png):
    api, receiver = stack.api, stack.receiver
    seen: dict = {}
    receiver.script["/huge"] = [endless_body(seen)]
    job = api.submit(digit_png, webhook_url=receiver.url("/huge")).json()
    final = delivered(api, job["id"])
    wait_for(lambda: "sent" in seen, 30, "the receiver to stop writing")
    # The client hung up after the cap: what got out is what the socket buffers held.
    assert seen["sent"] < 32 * 2**20
    assert final["webhook"]["attempts"] == 1


def test_a_retry_waits_in_redis_and_survives_a_webhook_worker_restart(stack, digit_png):
    api, receiver = stack.api, stack.receiver
    redis = stack.server.client()
    due = Keyspace().webhook_retries(QUEUE)
    receiver.script["/restart"] = [(503, {"Retry-After": "1"})]
    job = api.submit(digit_png, webhook_url=receiver.url("/restart")).json()
    wait_for(lambda: any(job["id"] in m for m in redis.zrange(due, 0, -1)), 30, "the retry scheduled in Redis")
    stack.sender.kill()  # SIGKILL: nothing held in its memory survives
    time.sleep(2)  # the retry falls due while no webhook worker runs
    assert len(receiver.to("/restart")) == 1
    stack.start_sender()
    final = delivered(api, job["id"])
    assert len(receiver.to("/restart")) == 2
    assert final["webhook"]["attempts"] == 2
    assert not any(job["id"] in m for m in redis.zrange(due, 0, -1))


def test_bad_webhook_options_are_422(hooks, digit_png):
    api, receiver = hooks
    assert api.submit(digit_png, webhook_url=receiver.url("/x"), webhook_events="finished").status_code == 422


def test_deliveries_verify_with_the_owners_secret_and_fail_with_another_keys(stack, digit_png):
    api, receiver = stack.api, stack.receiver
    other, _ = stack.client()
    mine, theirs = secret_of(api.http), secret_of(other)
    assert mine != theirs
    for http, path in ((api.http, "/owner-a"), (other, "/owner-b")):
        job = http.post("/jobs", files={"file": ("image", digit_png)}, data={"webhook_url": receiver.url(path)})
        assert job.status_code in (200, 202), job.text
        delivered(api, job.json()["id"], http=http)
    for path, own, foreign in (("/owner-a", mine, theirs), ("/owner-b", theirs, mine)):
        [request] = receiver.to(path)
        assert Webhook(own).verify(request["body"], headers_of(request))["status"] == "succeeded"
        with pytest.raises(WebhookVerificationError):
            Webhook(foreign).verify(request["body"], headers_of(request))
    other.close()


def test_after_a_rotation_deliveries_carry_both_signatures(stack, digit_png):
    api, receiver = stack.api, stack.receiver
    http, key_id = stack.client()
    old = secret_of(http)
    keys = stack.keys()
    record = keys.get(key_id)
    assert record is not None
    rotated = keys.rotate_webhook_secret(record.name)
    answer = http.get("/webhooks/secret").json()
    assert answer["secret"] == rotated.webhook_secret != old
    assert answer["previous_secret"] == old
    until = datetime.fromisoformat(answer["previous_valid_until"]).timestamp()
    assert 24 * 3600 - 60 < until - time.time() <= 24 * 3600
    job = http.post("/jobs", files={"file": ("image", digit_png)}, data={"webhook_url": receiver.url("/rotated")})
    delivered(api, job.json()["id"], http=http)
    [request] = receiver.to("/rotated")
    headers = headers_of(request)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, answer["secret"]):
        assert Webhook(secret).verify(request["body"], headers)["id"] == job.json()["id"]
    with pytest.raises(WebhookVerificationError):
        Webhook(secret_of(api.http)).verify(request["body"], headers)
    http.close()


def test_a_revoked_keys_jobs_are_not_delivered(stack):
    http, key_id = stack.client()
    http.close()
    keys, store = stack.keys(), stack.store()
    record = keys.get(key_id)
    assert record is not None
    job = make_job(store, webhook_url=stack.receiver.url("/revoked"), cached_result=PREDICTION, owner=key_id)
    assert keys.revoke(record.name)
    store.push(QUEUE, [webhook_message(CELERY, QUEUE, job.id, "completed")])
    final = recorded(store, job.id, "failed")
    assert final.webhook.attempts == 1
    assert "revoked" in final.webhook.last_error
    assert final.webhook.last_status_code is None
    assert not stack.receiver.to("/revoked")


def test_a_job_without_an_owner_is_signed_with_WEBHOOK_SECRET(stack):
    store = stack.store()
    job = make_job(store, webhook_url=stack.receiver.url("/ownerless"), cached_result=PREDICTION)
    store.push(QUEUE, [webhook_message(CELERY, QUEUE, job.id, "completed")])
    recorded(store, job.id, "delivered")
    [request] = stack.receiver.to("/ownerless")
    assert Webhook(SECRET).verify(request["body"], headers_of(request))["id"] == job.id


def test_without_an_owner_or_WEBHOOK_SECRET_nothing_is_signed(monkeypatch):
    monkeypatch.setattr(webhook_worker.settings, "webhook_secret", [])
    secrets, why = webhook_worker.signing_secrets(None)
    assert secrets == []
    assert why is not None
    assert "WEBHOOK_SECRET is unset" in why
    monkeypatch.setattr(webhook_worker.settings, "webhook_secret", [SECRET])
    assert webhook_worker.signing_secrets(None) == ([SECRET], None)


def test_with_auth_off_webhooks_need_WEBHOOK_SECRET(redis_server, logdir, digit_png):
    api = Api(redis_server.url, logdir, auth_disabled=True)
    try:
        response = api.submit(digit_png, webhook_url="https://example.com/hook")
        assert response.status_code == 422
        assert "WEBHOOK_SECRET" in response.json()["detail"]
        schema = api.http.get("/openapi.json").json()["components"]["schemas"]
        assert not any("webhook_url" in str(s.get("properties", {})) for s in schema.values())
        answer = api.http.get("/webhooks/secret")
        assert answer.status_code == 404
        assert "AUTH_DISABLED" in answer.json()["detail"]
    finally:
        api.stop()


def test_loopback_socket_helper():
    # free_port must give a port nothing listens on (the receiver-down test relies on it).
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", free_port()), timeout=1)

"""Webhook delivery end to end: API + inference worker + webhook worker + a real receiver."""

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook

from shared.processes import RedisServer, Worker, free_port, wait_for
from tests.utils.processes import start_api

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Receiver:
    """A webhook receiver on loopback that answers from a script and records every request."""

    def __init__(self, port: int):
        self.port = port
        self.requests: list[dict] = []
        self.script: dict[str, list[tuple[int, dict]]] = {}
        self.server = None

    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"])).decode()
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                script = receiver.script.get(self.path, [])
                code, headers = script.pop(0) if script else (200, {})
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


@pytest.fixture(scope="module")
def hooks(tmp_path_factory, logdir):
    """Redis, API, inference worker, webhook worker and a receiver, shared by this module.
    Any port on 127.0.0.1 is allowed; "localhost" is not (the SSRF test relies on that)."""
    server = RedisServer(tmp_path_factory.mktemp("hooks-redis"))
    server.start()
    env = dict(webhook_secret=SECRET, webhook_allowed_hosts="127.0.0.1",
               webhook_backoff_seconds=0.3, webhook_backoff_max_seconds=1, webhook_max_attempts=6)
    api = start_api(server.url, logdir, **env)
    worker = Worker(server.url, logdir, **env)
    sender = Worker(server.url, logdir, app="worker.webhooks", **env)
    receiver = Receiver(free_port())
    receiver.start()
    yield api, receiver
    receiver.stop()
    for process in (sender, worker, api):
        process.stop()
    server.stop()


def delivered(api, job_id, status="delivered"):
    return wait_for(lambda: (j := api.http.get(f"/jobs/{job_id}").json())["webhook"]["status"] == status and j,
                    30, f"webhook {status}")


def test_signed_delivery_of_running_and_completed(hooks, digit_png):
    api, receiver = hooks
    job = api.submit(digit_png, webhook_url=receiver.url("/in"), webhook_events="running,completed").json()
    delivered(api, job["id"])
    wait_for(lambda: len(receiver.to("/in")) == 2, 10, "both events")
    # Both attempts are recorded on the job a moment after the receiver answered them.
    final = wait_for(lambda: (j := api.http.get(f"/jobs/{job['id']}").json())["webhook"]["attempts"] >= 2 and j,
                     10, "both attempts recorded")
    bodies = []
    for request in receiver.to("/in"):
        headers = {k.lower(): v for k, v in request["headers"].items()}
        bodies.append(Webhook(SECRET).verify(request["body"], headers))  # raises if the signature is wrong
        assert headers["webhook-id"] in (f"msg_{job['id']}_running", f"msg_{job['id']}_completed")
    statuses = sorted(b["status"] for b in bodies)
    assert statuses == ["running", "succeeded"]
    done = next(b for b in bodies if b["status"] == "succeeded")
    assert done["id"] == job["id"]
    assert done["result"]["label"] == "7"
    assert final["webhook"]["attempts"] == 2
    assert final["webhook"]["last_status_code"] == 200


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


def test_ssrf_targets_are_refused(hooks, digit_png):
    api, _ = hooks
    for url in ("http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/", "gopher://x/"):
        response = api.submit(digit_png, webhook_url=url)
        assert response.status_code == 422, url
    # A name that resolves to loopback passes the submit check, and is refused at delivery.
    port = free_port()
    job = api.submit(digit_png, webhook_url=f"http://localhost:{port}/x").json()
    final = delivered(api, job["id"], status="failed")
    assert "resolves to" in final["webhook"]["last_error"]


def test_bad_webhook_options_are_422(hooks, digit_png):
    api, receiver = hooks
    assert api.submit(digit_png, webhook_url=receiver.url("/x"), webhook_events="finished").status_code == 422


def test_webhooks_refused_without_a_secret(api, digit_png):
    response = api.submit(digit_png, webhook_url="https://example.com/hook")
    assert response.status_code == 422
    assert "WEBHOOK_SECRET" in response.json()["detail"]


def test_loopback_socket_helper():
    # free_port must give a port nothing listens on (the receiver-down test relies on it).
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", free_port()), timeout=1)

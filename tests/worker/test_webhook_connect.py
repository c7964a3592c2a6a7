"""One delivery attempt in-process (worker.webhooks.delivery.post), against servers on loopback, with
name resolution stubbed: where it connects, what TLS checks, how long it may take."""

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import shared.webhooks
from worker.webhooks.delivery import post


class Server:
    """An HTTP(S) server on 127.0.0.1 that records the Host of each request and the TLS server
    name the client sent; `respond` writes the response (200 by default)."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.hosts: list[str] = []
        self.server_names: list[str | None] = []
        self.respond = lambda handler: handler.send_response(200) or handler.end_headers()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["content-length"]))
                server.hosts.append(self.headers["host"])
                server.respond(self)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            tls.sni_callback = lambda sock, name, context: self.server_names.append(name)
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.stop()


@pytest.fixture
def names(monkeypatch) -> dict[str, list[str]]:
    """Stub DNS: each lookup of a name here pops its next answer (the last one stays)."""
    table: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in table:
            return real(host, port, *args, **kwargs)
        answers = table[host]
        return real(answers.pop(0) if len(answers) > 1 else answers[0], port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


def send(url: str, allowed_hosts: list[str] | None = None, timeout: float = 5, **kwargs):
    return post(url, b"{}", {"content-type": "application/json"}, allowed_hosts or [], timeout, **kwargs)


def test_the_delivery_connects_to_the_address_that_was_vetted(server, names, monkeypatch):
    # Here 127.0.0.1 counts as public, the server's port as a web port, and anything else is
    # refused. The name answers 127.0.0.1 once, then 127.0.0.2 (DNS rebinding): a client that
    # resolved again after the check would go there (nothing listens).
    monkeypatch.setattr(shared.webhooks, "blocked", lambda ip: str(ip) != "127.0.0.1")
    monkeypatch.setattr(shared.webhooks, "WEB_PORTS", frozenset({server.port}))
    names["rebind.test"] = ["127.0.0.1", "127.0.0.2"]
    outcome = send(f"http://rebind.test:{server.port}/in")
    assert outcome.error is None
    assert outcome.status_code == 200
    assert server.hosts == [f"rebind.test:{server.port}"]  # the name is kept in Host
    assert names["rebind.test"] == ["127.0.0.2"]  # resolved exactly once
    # What the guard refuses is never connected to.
    names["rebind.test"] = ["127.0.0.2"]
    refused = send(f"http://rebind.test:{server.port}/in").error
    assert refused == "refused: rebind.test resolves to a private, loopback or reserved address"  # not which


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> dict[str, str]:
    """A self-signed certificate (and key) for hooks.test, as PEM file paths."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=hooks.test", "-addext", "subjectAltName=DNS:hooks.test",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return {"cert": str(cert), "key": str(key)}


def test_tls_keeps_the_name_for_sni_and_the_certificate(certificates, names):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates["cert"], certificates["key"])
    server = Server(tls=context)
    trust = ssl.create_default_context(cafile=certificates["cert"])
    names["hooks.test"] = names["other.test"] = ["127.0.0.1"]
    try:
        outcome = send(f"https://hooks.test:{server.port}/in", ["hooks.test"], tls=trust)
        assert (outcome.status_code, outcome.error) == (200, None)
        assert server.server_names == ["hooks.test"]
        assert server.hosts == [f"hooks.test:{server.port}"]
        # Same address, another name: the certificate is checked against the name, and fails.
        outcome = send(f"https://other.test:{server.port}/in", ["other.test"], tls=trust)
        assert outcome.status_code is None
        assert "CERTIFICATE_VERIFY_FAILED" in outcome.error
    finally:
        server.stop()


def test_one_deadline_bounds_the_whole_attempt(server):
    def trickle_body(handler):
        handler.send_response(200)
        handler.send_header("content-length", "1000")
        handler.end_headers()
        for _ in range(100):
            handler.wfile.write(b"x")
            time.sleep(0.05)

    url = f"http://127.0.0.1:{server.port}/in"
    # Headers that never end: no status, an error once the deadline passes.
    server.respond = lambda handler: [handler.wfile.write(b"HTTP/1.1 200 OK\r\n"), time.sleep(3)]
    start = time.monotonic()
    outcome = send(url, ["127.0.0.1"], timeout=1)
    assert time.monotonic() - start < 1.5
    assert outcome.status_code is None
    assert "ReadTimeout" in outcome.error
    # A status, then a body trickled: the status counts; the body is dropped at the deadline.
    server.respond = trickle_body
    start = time.monotonic()
    assert send(url, ["127.0.0.1"], timeout=1).status_code == 200
    assert time.monotonic() - start < 1.5

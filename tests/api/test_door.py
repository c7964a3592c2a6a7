"""The door (issue #19, 1): a keyed route answers 401 before any of its body is read, and
closes the connection instead of draining it; a body has a deadline in all; bodies received
at once are bounded per client address and in all (503). Real Redis, real API processes."""

import time

import pytest

from api.door import PublicPaths, needs_key, routes_of
from devstack.processes import wait_for
from tests.utils.processes import start_api
from tests.utils.raw_http import PART_HEAD, connect, read_answer, spooled, upload_head
from tests.utils.raw_http import closed_by_peer as closes
from tests.utils.samples import heldout_png

MB = 1024 * 1024


def test_every_route_that_takes_a_key_is_behind_the_door():
    from api.main import app

    routes = routes_of(app.router)
    public = PublicPaths(routes)
    keyed = [route for route in routes if needs_key(route)]
    assert len(keyed) >= 15  # the walk found the routers' routes, not only the app's own
    for route in routes:
        path = route.path.replace("{", "").replace("}", "") + ("/x" if route.path.startswith("/static") else "")
        assert (path in public) != needs_key(route), route.path
    assert public.exact == {"/healthz", "/readyz", "/", "/docs", "/redoc", "/openapi.json"}
    assert "/nowhere" not in public, "an unknown path needs a key too"


@pytest.fixture(scope="module")
def spooling_api(redis_server, logdir, tmp_path_factory):
    """An API whose temp dir (TMPDIR) is a folder of its own: spooled uploads show there."""
    tmp = tmp_path_factory.mktemp("api-tmp")
    api = start_api(redis_server.url, logdir, tmpdir=tmp)
    api.tmp = tmp
    yield api
    api.stop()


@pytest.mark.parametrize("authorization", [None, "Bearer qi_not-a-key", "Basic dXNlcjpwdw==", "Bearer"])
def test_an_upload_without_a_key_is_refused_before_its_body(spooling_api, authorization):
    api = spooling_api
    head = upload_head("/jobs/batch", 60 * MB)
    if authorization:
        head = head.replace(b"\r\n\r\n", f"\r\nAuthorization: {authorization}\r\n\r\n".encode(), 1)
    with connect(api.port) as connection:
        connection.sendall(head + PART_HEAD + b"\0" * 65536)  # the head, and a little of the body
        started = time.monotonic()
        answer = read_answer(connection)
        assert time.monotonic() - started < 5  # at once: no body was waited for
        assert answer.status == 401
        assert answer.headers["www-authenticate"] == "Bearer"
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["connection"] == "close"
        assert b"python -m api.keys create" in answer.body
        assert closes(connection, 60 * MB), "the rest of the body is not read (and dropped)"
    assert spooled(api.proc.pid, api.tmp) == 0


def test_a_keyed_upload_is_read_and_spooled_as_before(spooling_api):
    """The control: with the key, the same upload's body is read, and spooled past 1 MB."""
    api = spooling_api
    with connect(api.port) as connection:
        connection.sendall(upload_head("/jobs", 5 * MB, api.key) + PART_HEAD + b"\0" * (2 * MB))
        wait_for(lambda: spooled(api.proc.pid, api.tmp) == 1, 10, "the upload spooled to TMPDIR")
    wait_for(lambda: spooled(api.proc.pid, api.tmp) == 0, 10, "the spooled upload gone with its connection")
    assert api.submit(heldout_png(7)).status_code == 202


def test_a_get_without_a_key_keeps_its_connection(spooling_api):
    """No body declared: nothing to drain, so keep-alive as usual."""
    with connect(spooling_api.port) as connection:
        connection.sendall(b"GET /jobs HTTP/1.1\r\nHost: test\r\n\r\n")
        answer = read_answer(connection)
        assert answer.status == 401
        assert answer.headers.get("connection") != "close"
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        assert read_answer(connection).status == 200


def test_a_body_still_arriving_after_the_deadline_gets_408(redis_server, logdir):
    api = start_api(redis_server.url, logdir, body_deadline_seconds=2, body_timeout_seconds=10)
    try:
        with connect(api.port) as connection:
            connection.sendall(upload_head("/jobs", 100_000, api.key) + PART_HEAD)
            started = time.monotonic()
            connection.settimeout(0.3)
            answer = None
            while answer is None and time.monotonic() - started < 20:
                try:
                    connection.sendall(b"\0")  # a byte every 0.3 s: never a stall, always late
                    answer = read_answer(connection)
                except TimeoutError:
                    continue
        seconds = time.monotonic() - started
    finally:
        api.stop()
    assert answer is not None
    assert answer.status == 408, answer
    assert b"2 s in all" in answer.body
    assert answer.headers["connection"] == "close"
    assert 1.5 < seconds < 10


def gauge(api, name: str) -> float:
    """A gauge of the API's /metrics (ops port)."""
    line = next(line for line in api.ops.get("/metrics").text.splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


def _held_upload(api, source: str, counted: int | None = None):
    """A keyed upload whose body has begun and waits for the rest; with `counted`, once the
    API counts that many bodies arriving."""
    connection = connect(api.port, source)
    connection.sendall(upload_head("/jobs", MB, api.key) + PART_HEAD + b"\0" * 1000)
    if counted is not None:
        wait_for(lambda: gauge(api, "http_request_bodies_receiving") == counted, 10, f"{counted} bodies arriving")
    return connection


def _refused(api, source: str):
    with connect(api.port, source) as connection:
        connection.sendall(upload_head("/jobs", MB, api.key) + PART_HEAD)
        return read_answer(connection)


def test_bodies_at_once_are_bounded_per_address_and_in_all(redis_server, logdir):
    api = start_api(redis_server.url, logdir, max_bodies_per_client=2, max_bodies=3)
    held: list = []
    try:
        held += [_held_upload(api, "127.0.0.1", 1), _held_upload(api, "127.0.0.1", 2)]
        refused = _refused(api, "127.0.0.1")
        assert refused.status == 503, refused
        assert b"your address is sending 2 request bodies" in refused.body
        assert refused.headers["retry-after"] == "2"
        assert refused.headers["connection"] == "close"
        held.append(_held_upload(api, "127.0.0.2", 3))  # another address: the third in all
        refused = _refused(api, "127.0.0.3")
        assert refused.status == 503, refused
        assert b"the API is receiving 3 request bodies" in refused.body
        assert api.http.get("/jobs").status_code == 200, "requests without a body go on"
        assert api.submit(heldout_png(5)).status_code == 202, "and small ones (SMALL_BODY: in one read)"
        for connection in held:  # gone mid-body: their slots come back
            connection.close()
        held.clear()
        wait_for(lambda: gauge(api, "http_request_bodies_receiving") == 0, 10, "no body arriving")
        for digit in range(4):  # one after another: each body's slot is given back when it is in
            assert api.submit(heldout_png(digit)).status_code == 202
        assert gauge(api, "http_request_bodies_receiving") == 0
    finally:
        for connection in held:
            connection.close()
        api.stop()


def test_auth_disabled_lets_every_request_in(redis_server, logdir):
    api = start_api(redis_server.url, logdir, auth_disabled=True)
    try:
        del api.http.headers["Authorization"]
        assert api.submit(heldout_png(1)).status_code == 202
        assert api.http.get("/jobs").status_code == 200
    finally:
        api.stop()

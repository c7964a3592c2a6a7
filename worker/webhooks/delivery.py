"""One delivery attempt over HTTP: resolve the receiver's host once, vet every address
(shared.webhooks), connect to a vetted one while the request and TLS keep the name, no
redirects; the whole attempt ends by one deadline and reads at most MAX_RESPONSE_BYTES of
the response. No Celery, no Redis: worker.webhooks.app decides what to send and when."""

import contextlib
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, NamedTuple

import httpcore
import httpx

from shared.webhooks import Destination, Resolver, WebhookRefused, check_destination, resolve, retry_after_seconds

MAX_RESPONSE_BYTES = 64 * 1024  # of a response body; the status decides, the rest is not read
WRITE_CHUNK = 4096  # each piece of a request waits for the socket at most until the deadline
TLS = httpx.create_ssl_context()  # certifi's CAs, as httpx verifies by default
# Name resolution has no time-out of its own: it runs here, and the attempt waits only
# until its deadline.
_resolvers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook-dns")
HTTP_ERRORS = (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError)


class Outcome(NamedTuple):
    """One attempt: its status code (None: no response), error, and Retry-After seconds."""

    status_code: int | None
    error: str | None
    retry_after: float | None


class _DeadlineStream(httpcore.NetworkStream):
    """A connection on which every read, write and TLS handshake ends by one deadline, so a
    receiver that trickles bytes cannot stretch an attempt."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float):
        self._stream, self._deadline = stream, deadline

    def _left(self, timeout_error: type[httpcore.TimeoutException]) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise timeout_error("the attempt's deadline passed")
        return left

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._left(httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), WRITE_CHUNK):
            self._stream.write(buffer[start:start + WRITE_CHUNK], self._left(httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        # The handshake checks the certificate against server_hostname: the URL's name.
        tls = self._stream.start_tls(ssl_context, server_hostname, self._left(httpcore.ConnectTimeout))
        return _DeadlineStream(tls, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _VettedBackend(httpcore.NetworkBackend):
    """Connects to the destination's vetted addresses and port only, in order, whatever host
    httpcore asks for (the URL's name, which it keeps for Host and TLS)."""

    def __init__(self, destination: Destination, deadline: float):
        self._destination, self._deadline = destination, deadline
        self._tcp = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        error: httpcore.ConnectError | None = None
        for address in self._destination.addresses:
            left = self._deadline - time.monotonic()
            if left <= 0:
                break
            try:
                stream = self._tcp.connect_tcp(address, self._destination.port, left, socket_options=socket_options)
            except httpcore.ConnectError as exc:
                error = exc  # e.g. no IPv6 route: try the next address
                continue
            return _DeadlineStream(stream, self._deadline)
        raise error or httpcore.ConnectTimeout("the attempt's deadline passed")


def _resolver(deadline: float) -> Resolver:
    """shared.webhooks.resolve, waited for until the deadline at most."""

    def resolve_by_deadline(host: str, port: int) -> list[str]:
        future = _resolvers.submit(resolve, host, port)
        try:
            return future.result(max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            future.cancel()
            raise httpcore.ConnectTimeout(f"resolving {host} outlasted the attempt's deadline") from None

    return resolve_by_deadline


def _drain(response: httpcore.Response) -> None:
    """Read and drop the body up to MAX_RESPONSE_BYTES. The status has decided already: a body
    cut short (by the deadline, or the receiver) changes nothing."""
    read = 0
    with contextlib.suppress(*HTTP_ERRORS):
        for chunk in response.iter_stream():
            read += len(chunk)
            if read >= MAX_RESPONSE_BYTES:
                return


def post(url: str, body: bytes, headers: dict[str, str], allowed_hosts: list[str], timeout: float,
         tls: ssl.SSLContext = TLS) -> Outcome:
    """POST `body` to `url`: resolve once, vet, connect to a vetted address (Host and TLS
    keep the name), no redirects, read at most MAX_RESPONSE_BYTES, all within `timeout`."""
    deadline = time.monotonic() + timeout
    try:
        destination = check_destination(url, allowed_hosts, _resolver(deadline))
        request = httpx.Request("POST", url, headers=headers, content=body)  # adds Host, Content-Length
        target = httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port,
                              target=request.url.raw_path)
        backend = _VettedBackend(destination, deadline)
        with (httpcore.ConnectionPool(ssl_context=tls, network_backend=backend) as pool,
              pool.stream("POST", target, headers=request.headers.raw, content=request.content) as response):
            _drain(response)
    except (WebhookRefused, httpx.InvalidURL) as exc:
        return Outcome(None, f"refused: {exc}", None)
    except HTTP_ERRORS as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}", None)
    code = response.status
    retry_after = next((v.decode("latin-1") for k, v in response.headers if k.lower() == b"retry-after"), None)
    return Outcome(code, None if 200 <= code < 300 else f"HTTP {code}", retry_after_seconds(retry_after))

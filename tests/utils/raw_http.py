"""HTTP/1.1 by hand, for tests that must control when (and whether) a body's bytes are sent:
an HTTP client sends the whole body before it reads the answer."""

import contextlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

BOUNDARY = "b0undary"
PART_HEAD = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n"
             "Content-Type: image/png\r\n\r\n").encode()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes


def upload_head(path: str, length: int, key: str | None = None) -> bytes:
    """The head of a multipart POST declaring `length` bytes of body (with or without a key)."""
    lines = [f"POST {path} HTTP/1.1", "Host: test", f"Content-Length: {length}",
             f"Content-Type: multipart/form-data; boundary={BOUNDARY}"]
    if key is not None:
        lines.append(f"Authorization: Bearer {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def connect(port: int, source: str = "127.0.0.1", timeout: float = 10) -> socket.socket:
    """A connection to the API on loopback from `source` (any 127.x address is this host)."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    return connection


def read_answer(connection: socket.socket) -> Answer:
    """One whole answer (its head, then Content-Length bytes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return Answer(int(status_line.split()[1]), headers, body)


def closed_by_peer(connection: socket.socket, most: int) -> bool:
    """Whether the server stops taking bytes (it closed the connection) before `most` more
    were sent: uvicorn would otherwise read a refused request's whole body and drop it."""
    chunk, sent = b"\0" * 65536, 0
    try:
        while sent < most:
            connection.sendall(chunk)
            sent += len(chunk)
    except OSError:  # EPIPE, ECONNRESET: closed
        return True
    return False


def spooled(pid: int, folder: Path) -> int:
    """Files the process holds open in `folder`: Starlette spools upload parts over 1 MB to
    the temp dir as unnamed files (O_TMPFILE), seen only among the process's descriptors."""
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in os.listdir(fds):
        with contextlib.suppress(OSError):  # closed meanwhile
            count += os.readlink(fds / fd).startswith(str(folder))
    return count

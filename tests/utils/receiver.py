"""A webhook receiver on loopback for the tests of webhook delivery: it records every
request with the time it arrived, and answers each path from a script (a status, or a
function that handles the request itself: hang, sleep, ...). Default: 200."""

import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Step = int | Callable[[BaseHTTPRequestHandler], None]


class Receiver:
    def __init__(self, port: int):
        self.port = port
        self.requests: list[dict] = []
        self.script: dict[str, list[Step]] = {}  # per path, answers in turn
        self.always: dict[str, Step] = {}  # per path, the answer once its script is used up
        self.server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"])).decode()
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    receiver.requests.append({"path": self.path, "headers": headers, "body": body, "at": time.time()})
                    script = receiver.script.get(self.path, [])
                    step = script.pop(0) if script else receiver.always.get(self.path, 200)
                if callable(step):
                    step(self)
                    return
                self.send_response(step)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def to(self, path: str) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if r["path"] == path]


def hang(seconds: float) -> Callable[[BaseHTTPRequestHandler], None]:
    """An answer that holds the connection `seconds`, then answers 200 (if anyone still listens)."""

    def step(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(seconds)
        try:
            handler.send_response(200)
            handler.send_header("content-length", "0")
            handler.end_headers()
        except OSError:
            pass

    return step


class Silent:
    """A receiver that accepts every connection and never answers (nor reads): each attempt
    to it lasts its whole deadline."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.port = self.socket.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.held.append(connection)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.socket.close()
        for connection in self.held:
            connection.close()

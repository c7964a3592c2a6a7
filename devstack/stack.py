"""The local stack under one small supervisor (what `make run` runs):

    python -m devstack.stack [--redis-port 6379] [--api-port 8000] [--ops-port 9000] [--flower-port 5555]
                             [--run-dir .run]

Starts Redis (data as AOF in the run dir), then an inference worker, a training worker, a webhook worker, the
API (its ops port, /metrics and /queue, on 127.0.0.1 too; 0 turns it off) and Flower, with
REDIS_URL set and the rest of the environment passed through. A child that dies is
restarted with backoff, so a killed worker shows that nothing is lost. Ctrl-C or SIGTERM
stops the services, then Redis last; the exit status is 0. (The restarts and the stop:
devstack/supervisor.py; the command lines: devstack/commands.py.)
"""

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import time
import urllib.request
from pathlib import Path

import redis

from devstack.commands import API_ENV, ROOT, api_argv, flower_argv, redis_argv, service_env, training_worker_argv
from devstack.supervisor import Child, port_taken, stop
from shared.keystore import ensure_dev_key
from worker.launch import worker_argv

log = logging.getLogger("stack")

# The terminal's Ctrl-C goes to this process only (each child has its own session); it sets this.
stopping = False


def wait_for_redis(child: Child, port: int, timeout: float = 30) -> bool:
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    deadline = time.monotonic() + timeout
    while not stopping and child.alive() and time.monotonic() < deadline:
        try:
            return bool(client.ping())
        except redis.RedisError:
            time.sleep(0.1)
    return False


def quieted(argv: list[str]) -> list[str]:
    """A Celery command line without its start banner (`celery --quiet`): three workers' banners
    were ~80 lines that scrolled the start-up block away. LOG_LEVEL=DEBUG keeps them."""
    at = argv.index("celery") + 1
    return [*argv[:at], "--quiet", *argv[at:]]


class Readiness:
    """Prints what to try next, once: when the API's ops port answers /readyz with an
    inference worker up (its heartbeat), the moment `qi submit` would work. (The public
    /readyz names no workers. With the ops port off: once the public one answers.)"""

    def __init__(self, api_port: int, key_file: Path, ops_port: int = 0):
        self.api_port, self.key_file, self.ops_port = api_port, key_file, ops_port
        self.started = time.monotonic()
        self.next_poll = 0.0
        self.done = False

    def poll(self) -> None:
        now = time.monotonic()
        if self.done or now < self.next_poll:
            return
        self.next_poll = now + 1.0
        try:
            port = self.ops_port or self.api_port
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=0.5) as response:
                workers = json.loads(response.read()).get("workers", 0) if self.ops_port else 1
        except (OSError, ValueError):
            return
        if workers:
            self.done = True
            print(self.block(now - self.started), flush=True)

    def block(self, seconds: float) -> str:
        url = f"http://127.0.0.1:{self.api_port}"
        qi = Path(sys.executable).parent / "qi"
        qi_cmd = "qi" if shutil.which("qi") == str(qi) else os.path.relpath(qi, ROOT)
        return "\n".join([
            f"ready in {seconds:.0f} s: the API answers and a worker serves. Try, in another terminal:",
            f"  {qi_cmd} submit models/digits/examples      ten pictures, ten results",
            f"  {url}/                            drop a picture on the page (key: {self.key_file})",
            f"  curl -H \"Authorization: Bearer $(cat {self.key_file})\" -F file=@models/digits/examples/7.png "
            f"{url}/jobs",
            "Ctrl-C stops all. LOG_LEVEL=DEBUG shows the workers' start banners.",
        ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-port", type=int, default=6379)
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--ops-port", type=int, default=9000, help="the API's /metrics and /queue (0: off)")
    parser.add_argument("--flower-port", type=int, default=5555)
    parser.add_argument("--run-dir", type=Path, default=ROOT / ".run", help="Redis data (AOF)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [stack] %(message)s", stream=sys.stderr)

    # Fail at once, not in a restart loop: a port in use is most often another stack running.
    ports = {"--redis-port": args.redis_port, "--api-port": args.api_port, "--ops-port": args.ops_port,
             "--flower-port": args.flower_port}
    taken = [f"{flag} {port}" for flag, port in ports.items() if port and port_taken(port)]
    if taken:
        log.error("port in use: %s (another stack running? pick other ports)", ", ".join(taken))
        return 1

    def request_stop(signum: int, _frame: object) -> None:
        global stopping
        stopping = True

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, request_stop)

    run_dir = args.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    env = service_env(f"redis://127.0.0.1:{args.redis_port}/0")
    store = Child("redis", redis_argv(args.redis_port, run_dir), env)
    quiet = quieted if env.get("LOG_LEVEL", "INFO").upper() != "DEBUG" else (lambda argv: argv)
    # In stopping order: the API first (no new jobs), the inference worker last.
    services = [
        # The ops port on loopback, whatever OPS_HOST the environment has.
        Child("api", api_argv(args.api_port),
              {**env, **API_ENV, "OPS_PORT": str(args.ops_port), "OPS_HOST": "127.0.0.1"}),
        Child("flower", quiet(flower_argv(args.flower_port)), env),
        Child("webhook worker", quiet(worker_argv("webhooks", "worker.webhooks.app")), env),
        Child("training worker", quiet(training_worker_argv()), env),  # POST /models/{name}/versions
        Child("inference worker", quiet(worker_argv("inference")), env),
    ]

    store.start()
    if not wait_for_redis(store, args.redis_port):
        stop([store])
        if stopping:
            return 0
        log.error("Redis did not answer PING on port %d", args.redis_port)
        return 1
    # A development API key, kept across runs while it works (shared/apikeys.py).
    key_file = run_dir / "api-key"
    new_key = ensure_dev_key(f"redis://127.0.0.1:{args.redis_port}/0", key_file)
    for child in reversed(services):  # workers first: they take the longest to be ready
        if not stopping:
            child.start()
    if not stopping:
        ops = f"  Ops http://127.0.0.1:{args.ops_port}/metrics" if args.ops_port else ""
        print(f"Page http://127.0.0.1:{args.api_port}/  API docs http://127.0.0.1:{args.api_port}/docs{ops}"
              f"  Flower http://127.0.0.1:{args.flower_port}"
              "  (Ctrl-C stops all)", flush=True)
        header = f"Authorization: Bearer $(cat {key_file})"
        print(f"API key in {key_file}{' (new)' if new_key else ''}: curl -H \"{header}\" "
              f"http://127.0.0.1:{args.api_port}/jobs", flush=True)

    ready = Readiness(args.api_port, key_file, args.ops_port)
    while not stopping:
        for child in (store, *services):
            child.supervise()
        ready.poll()
        time.sleep(0.2)

    log.info("stopping: services, then Redis (it flushes its AOF)")
    stop(services)
    stop([store])
    log.info("all stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Webhook fairness between keys (README: Webhooks): key B's delivery delay alone, then while
key A's receiver accepts connections and never answers and A makes `--a-rate` deliveries a
second; with the bounds (WEBHOOK_MAX_IN_FLIGHT_PER_KEY, the circuit breaker) and without
them (no per-key limit, no breaker: one pool for all, as before), side by side.

    make bench-webhooks                 # = .venv/bin/python -m benchmarks.webhook_fairness
    make bench-webhooks ARGS="--b-jobs 30"

Each scenario on a clean Redis with one webhook worker (16 threads, WEBHOOK_TIMEOUT_SECONDS
10 s, the defaults). The jobs are cached results: the create script (the API's) finishes
each at once and queues its delivery, so only the webhook path is measured. B's delay: from
its job's end (Redis' clock) to its delivery's arrival at B's receiver (same host's clock).
"""

import argparse
import socket
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from devstack.processes import RedisServer, Worker, free_port
from shared.broker import make_celery, webhook_hooks
from shared.jobstore import JobStore, NewJob, new_job_id, new_record
from shared.keystore import create_key
from shared.schemas import ModelRef
from shared.settings import Settings

QUEUE = "webhooks"
PREDICTION = '{"label": "7", "score": 0.9, "top_k": [{"label": "7", "score": 0.9}]}'
WAIT_SECONDS = 60  # a B delivery not arrived by then counts as late


class Answering:
    """B's receiver: answers 200 at once and notes when each path's first request came."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        arrived = self.arrived

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["content-length"]))
                arrived.setdefault(self.path, time.time())
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"


class Silent:
    """A's receiver: accepts every connection, never answers."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0), backlog=4096)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.socket.accept()[0])
            except OSError:
                return


def finished_job(store: JobStore, owner: str, url: str) -> float:
    """A cached-result job of `owner` with a webhook to `url`; when it finished."""
    job_id = new_job_id()
    fields = new_record(ModelRef(name="bench", version="1"), job_id, webhook_url=url, owner=owner,
                        cached_result=PREDICTION)
    created = store.create(NewJob(fields, ""), "inference")
    assert created.fields is not None
    return float(created.fields["finished_at"])


def scenario(workdir: Path, redis: RedisServer, b_jobs: int, a_rate: float, bounded: bool) -> dict:
    redis.client().flushall()
    env: dict = dict(webhook_allowed_hosts="127.0.0.1", webhook_queue=QUEUE)
    if not bounded:
        env.update(webhook_max_in_flight_per_key=0, webhook_breaker_failures=10**9)
    worker = Worker(redis.url, workdir, app="worker.webhooks.app", **env)
    store = JobStore.connect(redis.url, 3600, timeout=10, hooks=webhook_hooks(make_celery(Settings(), "bench"), QUEUE))
    a, b = (create_key(redis.url, name, rate_limit=10**6, max_queued=0)[1] for name in ("a", "b"))
    answering, silent = Answering(), Silent()
    stop = threading.Event()

    def flood() -> None:
        n = 0
        started = time.monotonic()
        while not stop.is_set():
            finished_job(store, a, f"{silent.url}/a{n}")
            n += 1
            time.sleep(max(0.0, started + n / a_rate - time.monotonic()))

    flooding = threading.Thread(target=flood, daemon=True)
    try:
        if a_rate:
            flooding.start()
            time.sleep(5)  # A's attempts hang and its deliveries pile up first
        finished = {}
        for n in range(b_jobs):
            finished[f"/b{n}"] = finished_job(store, b, f"{answering.url}/b{n}")
            time.sleep(0.5)
        deadline = time.time() + WAIT_SECONDS
        while len(answering.arrived) < b_jobs and time.time() < deadline:
            time.sleep(0.2)
        stop.set()
        delays = [answering.arrived[path] - at for path, at in finished.items() if path in answering.arrived]
        first = min(finished.values())
        slowest = sorted(((answering.arrived[p] - at, at - first) for p, at in finished.items()
                          if p in answering.arrived), reverse=True)[:3]
        return {"delays": delays, "late": b_jobs - len(delays), "a_connections": len(silent.held), "slowest": slowest}
    finally:
        stop.set()
        worker.stop()
        silent.socket.close()
        answering.server.shutdown()


def quantile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--b-jobs", type=int, default=40, help="B's jobs per scenario, two a second")
    parser.add_argument("--a-rate", type=float, default=10.0, help="A's deliveries a second")
    parser.add_argument("--verbose", action="store_true", help="also B's slowest deliveries, and when")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        redis = RedisServer(workdir)
        redis.start()
        try:
            rows = {
                "B alone": scenario(workdir, redis, args.b_jobs, 0, bounded=True),
                f"A hanging at {args.a_rate:g}/s, bounds on": scenario(workdir, redis, args.b_jobs, args.a_rate, True),
                f"A hanging at {args.a_rate:g}/s, no bounds": scenario(workdir, redis, args.b_jobs, args.a_rate, False),
            }
        finally:
            redis.stop()
    print(f"B: {args.b_jobs} deliveries, two a second; A's receiver accepts and never answers (attempts 10 s)")
    print("| scenario | B p50 | B p99 | B max | B late (> 60 s) | A's connections held |")
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        d = row["delays"]
        print(f"| {name} | {1000 * quantile(d, 50):.0f} ms | {1000 * quantile(d, 99):.0f} ms | "
              f"{1000 * max(d, default=float('nan')):.0f} ms | {row['late']} | {row['a_connections']} |")
    if args.verbose:
        for name, row in rows.items():
            print(name, "slowest (delay, s after B's first):", [(round(d, 3), round(t, 1)) for d, t in row["slowest"]])


if __name__ == "__main__":
    main()

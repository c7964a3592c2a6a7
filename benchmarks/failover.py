"""Redis Sentinel failover under load (README: High availability): a primary, a replica and
three Sentinels on loopback (devstack.sentinels), an API, an inference worker, a webhook
worker and Flower, all through the Sentinels; JOBS submissions at CONCURRENCY, each with an
Idempotency-Key retried after a 503 or a dropped connection (every 0.1 s, not Retry-After's
2 s: the first 202 after the kill is then timed to 0.1 s). Once a third are accepted the
primary is SIGKILLed; once the Sentinels have promoted the replica, the killed node is
started again as a replica of the new primary (what the k8s StatefulSet does when its pod
comes back). Then every accepted job is read until it is terminal or gone.

    make bench-failover                  # = .venv/bin/python -m benchmarks.failover
    make bench-failover ARGS="--jobs 5000"

It runs twice: REDIS_MIN_REPLICAS_ACKED=1 and 0 (off), each on a fresh group, and first
times 500 jobs with no kill for the cost of WAIT. tests/devstack/test_sentinels.py runs
`failover` once with the option on and asserts on its counts."""

import argparse
import contextlib
import itertools
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from devstack.processes import Api, Flower, Worker, free_port, wait_for
from devstack.sentinels import SentinelGroup
from shared.keystore import create_key
from tests.utils.receiver import Receiver
from tests.utils.samples import heldout_png

TERMINAL = {"succeeded", "failed", "cancelled"}
RETRY_SECONDS = 0.1
# The replica is stopped (SIGSTOP) this long before the primary is killed: a replica that
# lags (on loopback replication is otherwise sub-millisecond, and a kill loses nothing).
STALL_SECONDS = 1.0
# The worker's settings (as tests/worker/test_redis_crash.py): a short visibility timeout, so
# the messages a worker held when the primary died are redelivered within the run.
WORKER_SETTINGS = {"max_batch_size": 8, "max_delay_ms": 5, "visibility_timeout_seconds": 6,
                   "webhook_allowed_hosts": "127.0.0.1", "webhook_backoff_seconds": 0.3,
                   "webhook_backoff_max_seconds": 1}


@dataclass
class Answers:
    """What the load saw."""

    accepted: dict[int, str] = field(default_factory=dict)  # submission -> job id
    statuses: Counter = field(default_factory=Counter)  # every answer's status (0: no answer)
    unavailable_without_retry_after: int = 0
    first_accept_after_kill: float | None = None  # seconds after the kill, for a request sent after it
    latencies: list[float] = field(default_factory=list)  # of the accepted answers, seconds
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Outcome:
    replicas: int
    jobs: int
    seconds: float = 0.0
    answers: Answers = field(default_factory=Answers)
    final: Counter = field(default_factory=Counter)  # succeeded, failed, gone, queued, running ...
    killed_at: float | None = None
    failover_seconds: float | None = None  # kill -> the Sentinels name a new primary that takes writes
    runs: int = 0  # jobs the workers finished, all runs counted
    noscript: int = 0  # NOSCRIPT lines in every service's log
    workers_alive: bool = False
    flower_ok: bool = False
    webhooks_delivered: int = 0
    webhooks_sent: int = 0

    @property
    def recovery_seconds(self) -> float | None:
        return self.answers.first_accept_after_kill

    @property
    def lost(self) -> int:
        """Accepted (202) and then gone or never finished."""
        return sum(n for status, n in self.final.items() if status != "succeeded" and status not in TERMINAL)

    @property
    def ran_twice(self) -> int:
        return max(0, self.runs - self.final["succeeded"] - self.final["failed"])

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.answers.statuses.items() if status >= 500 and status != 503)


class Stack:
    """The HA group and every service through it."""

    def __init__(self, workdir: Path, replicas: int, relay: bool = True):
        self.group = SentinelGroup(workdir / "ha", relay=relay)
        self.group.start()
        self.logdir = workdir / "logs"
        self.logdir.mkdir(exist_ok=True)
        settings = self.group.settings(redis_min_replicas_acked=replicas)
        url = self.group.url
        self.worker = Worker(url, self.logdir, **settings, **WORKER_SETTINGS)
        self.sender = Worker(url, self.logdir, app="worker.webhooks.app", **settings, **WORKER_SETTINGS)
        self.api = Api(url, self.logdir, result_cache_ttl_seconds=0, webhook_allowed_hosts="127.0.0.1", **settings)
        self.flower = Flower(url, self.logdir, **settings)
        key, _ = create_key(self.group.target(), f"failover-{uuid.uuid4().hex[:8]}", rate_limit=1_000_000,
                            max_queued=0, max_records=0, read_rate_limit=1_000_000)
        self.headers = {"Authorization": f"Bearer {key}"}
        self.receiver = Receiver(free_port())
        self.receiver.start()

    def stop(self) -> None:
        for stop in (self.receiver.stop, self.flower.stop, self.api.stop, self.sender.stop, self.worker.stop,
                     self.group.stop):
            with contextlib.suppress(Exception):
                stop()

    def logs(self) -> list[Path]:
        return [*self.logdir.glob("*.log"), *self.group.workdir.glob("sentinel-*/sentinel.log")]


def submit(stack: Stack, jobs: int, concurrency: int, answers: Answers, killed: list[float],
           kill_at: int | None = None, on_kill=None) -> None:
    """`jobs` accepted submissions at `concurrency`; `on_kill` called once `kill_at` are accepted."""
    numbers = itertools.count()
    kill_once = threading.Lock()

    def one(client: httpx.Client, i: int) -> None:
        key = uuid.uuid4().hex
        image = heldout_png(i % 300)
        while True:
            sent = time.monotonic()
            try:
                response = client.post("/jobs", files={"file": ("digit.png", image)}, headers={"Idempotency-Key": key})
            except httpx.HTTPError:
                with answers.lock:
                    answers.statuses[0] += 1
                time.sleep(RETRY_SECONDS)
                continue
            arrived = time.monotonic()
            with answers.lock:
                answers.statuses[response.status_code] += 1
                if response.status_code == 503 and "retry-after" not in response.headers:
                    answers.unavailable_without_retry_after += 1
            if response.status_code in (200, 202):
                with answers.lock:
                    answers.accepted[i] = response.json()["id"]
                    answers.latencies.append(arrived - sent)
                    if killed and sent > killed[0] and answers.first_accept_after_kill is None:
                        answers.first_accept_after_kill = arrived - killed[0]
                    count = len(answers.accepted)
                if kill_at is not None and count >= kill_at and on_kill is not None and kill_once.acquire(False):
                    threading.Thread(target=on_kill, daemon=True).start()
                return
            if response.status_code not in (429, 503) and response.status_code < 500:
                return  # a 4xx would be a bug of this driver: counted, not retried
            time.sleep(RETRY_SECONDS)

    def loop() -> None:
        with httpx.Client(base_url=stack.api.url, timeout=30, headers=stack.headers) as client:
            while (i := next(numbers)) < jobs:
                one(client, i)

    threads = [threading.Thread(target=loop) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def settle(stack: Stack, job_ids: list[str], timeout: float) -> Counter:
    """Each job's status once every one is terminal or gone (404), or as things stand at `timeout`."""
    deadline = time.monotonic() + timeout
    outcome: dict[str, str] = {}
    pending = list(job_ids)
    with httpx.Client(base_url=stack.api.url, timeout=30, headers=stack.headers) as client:
        def read(job_id: str) -> tuple[str, str]:
            try:
                response = client.get(f"/jobs/{job_id}")
            except httpx.HTTPError:
                return job_id, "unread"
            if response.status_code == 404:
                return job_id, "gone"
            return job_id, response.json()["status"] if response.status_code == 200 else f"http_{response.status_code}"

        with ThreadPoolExecutor(16) as pool:
            while pending and time.monotonic() < deadline:
                outcome.update(pool.map(read, pending))
                pending = [j for j in pending if outcome[j] not in TERMINAL | {"gone"}]
                if pending:
                    time.sleep(0.5)
    return Counter(outcome.values())


def finished_runs(stack: Stack) -> int:
    """Jobs the inference worker finished, each run counted (inference_jobs_total)."""
    text = httpx.get(stack.worker.metrics_url, timeout=10).text
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("inference_jobs_total{")))


def webhooks_after(stack: Stack, count: int = 5, timeout: float = 30) -> tuple[int, int]:
    """`count` jobs with a webhook, submitted now: how many were delivered within `timeout`."""
    ids = []
    with httpx.Client(base_url=stack.api.url, timeout=30, headers=stack.headers) as client:
        for i in range(count):
            response = client.post("/jobs", files={"file": ("digit.png", heldout_png(i))},
                                   data={"webhook_url": f"http://127.0.0.1:{stack.receiver.port}/hook"})
            if response.status_code == 202:
                ids.append(response.json()["id"])

        def delivered() -> bool:
            states = [(client.get(f"/jobs/{j}").json().get("webhook") or {}).get("status") for j in ids]
            return all(state == "delivered" for state in states)

        with contextlib.suppress(TimeoutError):
            wait_for(delivered, timeout, "the webhooks")
        done = sum((client.get(f"/jobs/{j}").json().get("webhook") or {}).get("status") == "delivered" for j in ids)
    return done, count


def flower_follows(stack: Stack, job_ids: list[str], timeout: float = 20) -> bool:
    """Flower still answers and has the events of jobs that ran after the failover."""
    def seen() -> bool:
        return any(stack.flower.http.get(f"/api/task/info/{j}").status_code == 200 for j in job_ids[-20:])
    try:
        return stack.flower.proc.poll() is None and bool(wait_for(seen, timeout, "Flower to see the new jobs"))
    except TimeoutError:
        return False


def failover(workdir: Path, replicas: int = 1, jobs: int = 2000, concurrency: int = 32,
             settle_seconds: float = 60, stall_seconds: float = STALL_SECONDS) -> Outcome:
    """One run: the stack, the load, the kill a third of the way in (the replica stopped for
    `stall_seconds` first), the counts."""
    stack = Stack(workdir, replicas)
    outcome = Outcome(replicas, jobs)
    killed: list[float] = []

    def kill() -> None:
        node = stack.group.kill_primary(stall_seconds)
        killed.append(time.monotonic())
        outcome.failover_seconds = 0.0
        stack.group.wait_failover(node.port)
        outcome.failover_seconds = time.monotonic() - killed[0]
        stack.group.restart_as_replica(node)

    try:
        started = time.monotonic()
        submit(stack, jobs, concurrency, outcome.answers, killed, kill_at=jobs // 3, on_kill=kill)
        outcome.seconds = time.monotonic() - started
        outcome.killed_at = killed[0] - started if killed else None
        outcome.final = settle(stack, list(outcome.answers.accepted.values()), settle_seconds)
        outcome.runs = finished_runs(stack)
        outcome.workers_alive = stack.worker.proc.poll() is None and stack.sender.proc.poll() is None
        outcome.webhooks_delivered, outcome.webhooks_sent = webhooks_after(stack)
        outcome.flower_ok = flower_follows(stack, list(outcome.answers.accepted.values()))
        outcome.noscript = sum(path.read_text(errors="replace").count("NOSCRIPT") for path in stack.logs())
    finally:
        stack.stop()
    return outcome


def cost(workdir: Path, replicas: int, jobs: int = 500, concurrency: int = 32) -> tuple[float, float, float]:
    """Jobs/s and mean POST latency (ms) of `jobs` submissions at `concurrency`, no kill, each
    until succeeded; and the mean POST latency (ms) of 100 submissions one at a time. The
    replica replicates directly (no relay in its link)."""
    stack = Stack(workdir, replicas, relay=False)
    try:
        submit(stack, 64, concurrency, Answers(), [])  # warm-up: the model, the pools
        answers = Answers()
        started = time.monotonic()
        submit(stack, jobs, concurrency, answers, [])
        final = settle(stack, list(answers.accepted.values()), 60)
        seconds = time.monotonic() - started
        assert final["succeeded"] == jobs, final
        alone = Answers()
        submit(stack, 100, 1, alone, [])
    finally:
        stack.stop()
    return (jobs / seconds, 1000 * sum(answers.latencies) / len(answers.latencies),
            1000 * sum(alone.latencies) / len(alone.latencies))


def report(o: Outcome) -> str:
    a = o.answers
    recovery = f"{o.recovery_seconds:.2f} s" if o.recovery_seconds is not None else "never"
    failover_s = f"{o.failover_seconds:.2f} s" if o.failover_seconds is not None else "-"
    return "\n".join([
        f"REDIS_MIN_REPLICAS_ACKED={o.replicas}: {len(a.accepted):,} of {o.jobs:,} accepted in {o.seconds:.1f} s, "
        f"primary SIGKILLed at {o.killed_at or 0:.1f} s",
        f"  Sentinels promoted the replica after {failover_s}; first 202 (for a request sent after the kill) "
        f"after {recovery}",
        f"  answers: {dict(sorted(a.statuses.items()))} (0: connection dropped); 503 without Retry-After: "
        f"{a.unavailable_without_retry_after}; other 5xx: {o.server_errors}",
        f"  accepted jobs now: {dict(o.final)}; lost (gone or unfinished): {o.lost}; extra runs (runs finished "
        f"- jobs finished, counting the runs of jobs lost since): {o.ran_twice}",
        f"  workers alive: {o.workers_alive}; webhooks delivered after the failover: {o.webhooks_delivered}/"
        f"{o.webhooks_sent}; Flower follows: {o.flower_ok}; NOSCRIPT in logs: {o.noscript}",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--cost-jobs", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        off_rate, off_ms, off_alone = cost(root / "cost-off", 0, args.cost_jobs, args.concurrency)
        on_rate, on_ms, on_alone = cost(root / "cost-on", 1, args.cost_jobs, args.concurrency)
        print(f"cost of WAIT ({args.cost_jobs} jobs at concurrency {args.concurrency}, no kill): "
              f"off {off_rate:.0f} jobs/s, POST {off_ms:.1f} ms; on {on_rate:.0f} jobs/s, POST {on_ms:.1f} ms: "
              f"{on_ms - off_ms:+.2f} ms per POST ({100 * (on_ms - off_ms) / off_ms:+.0f} %), "
              f"{1000 / on_rate - 1000 / off_rate:+.2f} ms per job of throughput "
              f"({100 * (on_rate - off_rate) / off_rate:+.0f} %)")
        print(f"  one at a time (100 jobs): POST off {off_alone:.2f} ms, on {on_alone:.2f} ms: "
              f"{on_alone - off_alone:+.2f} ms ({100 * (on_alone - off_alone) / off_alone:+.0f} %)")
        for replicas in (1, 0):
            print(report(failover(root / f"failover-{replicas}", replicas, args.jobs, args.concurrency)))


if __name__ == "__main__":
    main()

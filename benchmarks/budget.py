"""The per-key record budget under abuse (README: threat model): key A loops cached
submissions of one image at its full rate, each with a webhook to a receiver that never
answers, while key B submits new images at a steady rate; the digits model, one inference
worker, one webhook worker, keys on, the result cache on.

    make bench-budget                      # = .venv/bin/python -m benchmarks.budget (10 minutes)
    make bench-budget ARGS="--minutes 2"

Every 10 s it samples Redis' used_memory and what Redis holds for A (its job records,
Idempotency-Keys and batches, counted by SCAN: not the budget's own count), and prints the
largest memory, A's largest count against its budget, and B's accepted, refused and
succeeded submissions. A's rate is its key's (default RATE_LIMIT_PER_MINUTE, 600 a minute);
its budget `--budget` (default 1,000: reached in under two minutes at that rate, so the
run shows the budget holding, not merely not reached).
"""

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from devstack.processes import Api, RedisServer, Worker
from shared.jobstore import Keyspace
from shared.keystore import create_key
from tests.utils.held import held_in_redis
from tests.utils.samples import heldout_png

SAMPLE_SECONDS = 10


class Abuser(threading.Thread):
    """Key A: the same image again and again (a cached result after the first), each with a
    webhook to `hook`, as fast as its rate allows."""

    def __init__(self, url: str, key: str, hook: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {key}"})
        self.hook, self.stop = hook, stop
        self.counts: dict[str, int] = {"accepted": 0, "budget": 0, "rate": 0, "other": 0}

    def run(self) -> None:
        image = heldout_png(0)
        while not self.stop.is_set():
            answer = self.client.post("/jobs", files={"file": ("a.png", image)}, data={"webhook_url": self.hook})
            if answer.status_code in (200, 202):
                self.counts["accepted"] += 1
            elif answer.status_code == 429 and "record budget" in answer.text:
                self.counts["budget"] += 1
            elif answer.status_code == 429:  # its rate: wait as told, then go on at full rate
                self.counts["rate"] += 1
                self.stop.wait(float(answer.headers.get("retry-after", 1)))
            else:
                self.counts["other"] += 1


class Neighbour(threading.Thread):
    """Key B: a new image every `every` seconds; what became of each."""

    def __init__(self, url: str, key: str, every: float, stop: threading.Event):
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {key}"})
        self.every, self.stop = every, stop
        self.jobs: list[str] = []
        self.refused: list[int] = []

    @staticmethod
    def image(i: int) -> bytes:
        """A new picture each time: the held-out digits (359 after A's), then again at other sizes."""
        count = 359
        return heldout_png(1 + i % count, size=64 + 4 * (i // count))

    def run(self) -> None:
        started = time.monotonic()
        while not self.stop.is_set():
            i = len(self.jobs) + len(self.refused)
            answer = self.client.post("/jobs", files={"file": (f"{i}.png", self.image(i))})
            if answer.status_code in (200, 202):
                self.jobs.append(answer.json()["id"])
            else:
                self.refused.append(answer.status_code)
            self.stop.wait(max(0.0, started + (i + 1) * self.every - time.monotonic()))

    def succeeded(self) -> int:
        return sum(self.client.get(f"/jobs/{job_id}", params={"wait": 60}).json()["status"] == "succeeded"
                   for job_id in self.jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long A abuses and B submits")
    parser.add_argument("--budget", type=int, default=1000, help="key A's --max-records")
    parser.add_argument("--rate", type=int, default=600, help="key A's submissions per minute")
    parser.add_argument("--b-every", type=float, default=1.0, help="seconds between key B's submissions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        redis = RedisServer(workdir)
        redis.start()
        hanging = socket.socket()  # listens, never accepts: every delivery attempt times out
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(4096)
        hook = f"http://127.0.0.1:{hanging.getsockname()[1]}/hook"
        env: dict[str, Any] = dict(webhook_allowed_hosts="127.0.0.1", result_cache_ttl_seconds=3600)
        started: list[Any] = []
        try:
            started.append(Worker(redis.url, workdir, **env))
            started.append(Worker(redis.url, workdir, app="worker.webhooks.app", **env))
            started.append(api := Api(redis.url, workdir, **env))
            a_key, a_id = create_key(redis.url, "a", rate_limit=args.rate, max_records=args.budget)
            b_key, _ = create_key(redis.url, "b", rate_limit=600)
            stop = threading.Event()
            abuser, neighbour = Abuser(api.url, a_key, hook, stop), Neighbour(api.url, b_key, args.b_every, stop)
            rows = run(redis, a_id, abuser, neighbour, stop, args.minutes * 60)
            succeeded = neighbour.succeeded()
        finally:
            for process in reversed(started):
                process.stop()
            hanging.close()
            redis.stop()
    report(rows, args, abuser, neighbour, succeeded)


def run(redis: RedisServer, a_id: str, abuser: Abuser, neighbour: Neighbour, stop: threading.Event,
        seconds: float) -> list[dict[str, Any]]:
    """Both keys for `seconds`; a sample every SAMPLE_SECONDS."""
    client, keys = redis.client(), Keyspace()
    abuser.start()
    neighbour.start()
    rows, began = [], time.monotonic()
    while not stop.wait(SAMPLE_SECONDS):
        rows.append({"t": time.monotonic() - began, "memory": int(client.info("memory")["used_memory"]),
                     "a_records": sum(held_in_redis(client, a_id).values()), **abuser.counts,
                     "b_accepted": len(neighbour.jobs), "b_refused": len(neighbour.refused),
                     "retries": client.zcard(keys.webhook_retries("webhooks")),
                     "webhook_queue": client.llen("webhooks")})
        if time.monotonic() - began >= seconds:
            stop.set()
    abuser.join(60)
    neighbour.join(60)
    return rows


def report(rows: list[dict[str, Any]], args: argparse.Namespace, abuser: Abuser, neighbour: Neighbour,
           succeeded: int) -> None:
    print(f"{args.minutes:g} min; key A: {args.rate}/min, budget {args.budget} records, cached submissions with "
          f"a webhook to a receiver that never answers; key B: one new image every {args.b_every:g} s\n")
    print("| t | used_memory | A's records | A accepted | A refused (budget) | B accepted | B refused | "
          "webhook retries waiting | webhook queue |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['t']:.0f} s | {row['memory'] / 2**20:.1f} MiB | {row['a_records']} | {row['accepted']} | "
              f"{row['budget']} | {row['b_accepted']} | {row['b_refused']} | {row['retries']} | "
              f"{row['webhook_queue']} |")
    print(f"\nmax used_memory {max(row['memory'] for row in rows) / 2**20:.1f} MiB; A's max records "
          f"{max(row['a_records'] for row in rows)} (budget {args.budget}); A: {abuser.counts}; B: "
          f"{len(neighbour.jobs)} accepted, {len(neighbour.refused)} refused {sorted(set(neighbour.refused))}, "
          f"{succeeded} succeeded")


if __name__ == "__main__":
    main()

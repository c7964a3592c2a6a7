"""Fair share and priority lanes under a flood, side by side in one run (README: Fair share
and priority lanes): the CNN model (benchmarks/cnn.py), one worker, keys on.

    make bench-fairness              # = .venv/bin/python -m benchmarks.fairness
    make bench-fairness ARGS="--seconds 10"

Scenarios, each on a clean Redis: B alone submits one job a second; then key A queues a
flood worth about `--seconds` of the worker's time (at least 20 batches) and B submits one
job a second while it drains, with fair share on (B normal, then B high) and off
(FAIR_SHARE=false: first come, first served). B's latency is submission to finished (server
stamps); A's throughput is its flood over the time the flood took; the cost is the
service's CPU (from /proc) and Redis' commands per job over the whole scenario.
"""

import argparse
import statistics
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks import cnn
from benchmarks.costs import CostMeter
from benchmarks.run import photo_images
from devstack.processes import Api, RedisServer, Worker, wait_for
from shared.keystore import create_key
from shared.schemas import Priority

BATCH = 32


def stamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


class Scenario:
    def __init__(self, workdir: Path, redis: RedisServer, model_dir: Path, fair: bool, prefetch_batches: int = 2):
        redis.client().flushall()
        env: dict[str, Any] = dict(model_dir=model_dir, default_model=cnn.NAME, result_cache_ttl_seconds=0)
        self.worker = Worker(redis.url, workdir, **env, prefetch_batches=prefetch_batches)
        self.api = Api(redis.url, workdir, **env, fair_share=fair)
        self.meter = CostMeter({"api": self.api.proc.pid, "worker": self.worker.proc.pid}, redis.client(),
                               load_generator=False)
        self.keys = {name: create_key(redis.url, name, rate_limit=10**6, max_queued=0, max_records=0,
                                       max_priority=Priority.high)[0]
                     for name in ("a", "b")}
        self.images = photo_images(64, side=cnn.SIDE)
        self.jobs = 0

    def close(self) -> None:
        self.api.stop()
        self.worker.stop()

    def post(self, key: str, count: int, priority: str = "normal") -> list[str]:
        files = [("files", (f"{i}.jpg", self.images[i % len(self.images)])) for i in range(count)]
        answer = httpx.post(f"{self.api.url}/jobs/batch", files=files, data={"priority": priority}, timeout=60,
                            headers={"Authorization": f"Bearer {self.keys[key]}"})
        answer.raise_for_status()
        self.jobs += count
        return [item["job"]["id"] for item in answer.json()["items"]]

    def finished(self, key: str, job_id: str) -> dict:
        def done() -> dict | None:
            job = httpx.get(f"{self.api.url}/jobs/{job_id}", params={"wait": 30}, timeout=60,
                            headers={"Authorization": f"Bearer {self.keys[key]}"}).json()
            return job if job["status"] in ("succeeded", "failed") else None

        return wait_for(done, 600, job_id)

    def trickle(self, seconds: float, priority: str = "normal") -> list[float]:
        """B submits one job a second for `seconds`; each one's latency (server stamps)."""
        ids = []
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            ids += self.post("b", 1, priority)
            time.sleep(max(0.0, started + len(ids) - time.monotonic()))
        jobs = [self.finished("b", job_id) for job_id in ids]
        return [stamp(job["finished_at"]) - stamp(job["created_at"]) for job in jobs]

    def flood(self, count: int, seconds: float, priority: str = "normal") -> dict:
        """A queues `count` jobs; B trickles meanwhile. B's latencies, A's throughput."""
        ids: list[str] = []
        def post_all() -> None:
            for _ in range(count // 64):
                ids.extend(self.post("a", 64))

        poster = threading.Thread(target=post_all)
        poster.start()
        time.sleep(1)  # A's backlog forms first
        latencies = self.trickle(seconds, priority)
        poster.join()
        jobs = [self.finished("a", job_id) for job_id in ids]
        first, last = min(stamp(j["created_at"]) for j in jobs), max(stamp(j["finished_at"]) for j in jobs)
        return {"b": latencies, "a_jobs_per_s": len(jobs) / (last - first)}


def p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long B trickles (and A's flood lasts)")
    parser.add_argument("--prefetch-batches", type=int, default=2, help="the worker's PREFETCH_BATCHES")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model_dir = cnn.write_model_dir(workdir / "models")
        redis = RedisServer(workdir)
        redis.start()
        rows, costs = {}, {}
        try:
            alone = Scenario(workdir, redis, model_dir, fair=True)
            try:
                rows["B alone"] = {"b": alone.trickle(min(args.seconds, 10))}
                started = time.monotonic()  # the worker's rate under a backlog, to size the flood
                ids = [job for _ in range(10) for job in alone.post("a", 64)]
                alone.finished("a", ids[-1])
                rate = len(ids) / (time.monotonic() - started)
            finally:
                alone.close()
            count = max(20 * BATCH, int(rate * args.seconds) // 64 * 64)
            for name, fair, priority in (("fair share off (FIFO)", False, "normal"), ("fair share on", True, "normal"),
                                         ("fair share on, B high", True, "high")):
                scenario = Scenario(workdir, redis, model_dir, fair=fair, prefetch_batches=args.prefetch_batches)
                try:
                    rows[name] = scenario.flood(count, args.seconds, priority)
                    costs[name] = scenario.meter.per_job(scenario.jobs)
                finally:
                    scenario.close()
        finally:
            redis.stop()
    print(f"flood: {count} jobs of key A (about {count / rate:.0f} s of the worker at {rate:.0f} jobs/s); "
          f"key B one job a second; PREFETCH_BATCHES={args.prefetch_batches}\n")
    print("| scenario | B p50 | B p99 | A jobs/s | service CPU ms/job | Redis commands/job |")
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        cost = costs.get(name)
        print(f"| {name} | {1000 * p(row['b'], 50):.0f} ms | {1000 * p(row['b'], 99):.0f} ms | "
              f"{row.get('a_jobs_per_s', 0):.0f} | {cost['service_cpu_ms'] if cost else 0:.2f} | "
              f"{cost['redis_commands'] if cost else 0:.1f} |")


if __name__ == "__main__":
    main()

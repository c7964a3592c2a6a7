"""Flower's memory stays bounded however many jobs pass: start a real Redis and a real Flower
(devstack.commands.flower_argv, as `make run` starts it), send the task events of N distinct
jobs (received, started, succeeded, with the fields our worker sends) through Celery's event
dispatcher, and sample Flower's RSS and the number of tasks it holds every 5,000 jobs.
Events are what fill Flower, and sending them is much faster than running the jobs.

    make bench-flower                    # = .venv/bin/python -m benchmarks.flower_soak
    .venv/bin/python -m benchmarks.flower_soak --max-tasks 100000   # Flower's own default
    .venv/bin/python -m benchmarks.flower_soak --jobs 100000

Exits 1 when Flower still grows by more than 0.2 KB per job over the second half of the soak
(unbounded, it grows by ~4 KB per job). Checked when that half starts at 2 x max_tasks jobs
or later: for a while after Flower reaches max_tasks its RSS still rises, as Python's cycle
collector frees the tasks it drops in bursts, and the default (5 x) leaves room for that.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx

from devstack.commands import FLOWER_MAX_TASKS
from devstack.processes import Flower, RedisServer, wait_for
from shared.broker import INFER_TASK, make_celery
from shared.jobstore import new_job_id
from shared.settings import Settings

SAMPLE_EVERY = 5_000  # jobs between two samples
SYNC_EVERY = 1_000  # jobs sent before waiting for Flower to catch up (bounds Redis' pub/sub buffer)
BATCH = 32  # the worker sends its events a batch at a time
LIMIT_KB_PER_JOB = 0.2
HOSTNAME = "soak@bench"  # the worker the events come from


def send_jobs(dispatcher, ids: list[str]) -> None:
    """The events a worker sends for these jobs (worker/inference/tasks.py), a batch at a time."""
    for start in range(0, len(ids), BATCH):
        batch = ids[start:start + BATCH]
        for job_id in batch:
            dispatcher.send("task-received", uuid=job_id, name=INFER_TASK, args="", kwargs="")
        for job_id in batch:
            dispatcher.send("task-started", uuid=job_id)
        for job_id in batch:
            dispatcher.send("task-succeeded", uuid=job_id, result="7", runtime=0.004)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def succeeded(http: httpx.Client, job_id: str) -> bool:
    """Flower has processed this job's last event (events arrive in order: all before it too)."""
    response = http.get(f"/api/task/info/{job_id}")
    return response.status_code == 200 and response.json()["state"] == "SUCCESS"


def caught_up(http: httpx.Client, job_id: str, sent: int) -> None:
    wait_for(lambda: succeeded(http, job_id), 120, f"Flower to process {sent:,} jobs")


def tasks_held(http: httpx.Client) -> int:
    """The total Flower's tasks page shows: the tasks in its memory."""
    params: dict[str, str | int] = {"draw": 1, "start": 0, "length": 1, "order[0][column]": 0, "columns[0][data]": ""}
    total: int = http.get("/tasks/datatable", params=params).json()["recordsTotal"]
    return total


def soak(jobs: int, max_tasks: int, workdir: Path) -> list[tuple[int, int, int]]:
    """(jobs sent, Flower's RSS in kB, tasks Flower holds) at the start and every SAMPLE_EVERY jobs."""
    server = RedisServer(workdir)
    server.start()
    app = make_celery(Settings(redis_url=server.url), "flower-soak")
    flower: Flower | None = None
    try:
        flower = Flower(server.url, workdir, max_tasks)
        http, pid = flower.http, flower.proc.pid
        ids = [new_job_id() for _ in range(jobs)]
        with app.events.default_dispatcher(hostname=HOSTNAME) as dispatcher:
            def first_job_seen() -> bool:  # sent until Flower listens: events sent before are lost
                send_jobs(dispatcher, ids[:1])
                return succeeded(http, ids[0])

            wait_for(first_job_seen, 60, "Flower to receive events")
            samples = [(1, rss_kb(pid), tasks_held(http))]
            sent = 1
            for end in [*range(SYNC_EVERY, jobs, SYNC_EVERY), jobs]:
                send_jobs(dispatcher, ids[sent:end])
                caught_up(http, ids[end - 1], end)
                sent = end
                if end % SAMPLE_EVERY == 0 or end == jobs:
                    samples.append((end, rss_kb(pid), tasks_held(http)))
                    print(f"  {end:>7,} jobs: Flower RSS {samples[-1][1] / 1024:6.1f} MiB, "
                          f"holds {samples[-1][2]:,} tasks", file=sys.stderr)
        return samples
    finally:
        if flower is not None:
            flower.stop()
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--max-tasks", type=int, default=FLOWER_MAX_TASKS,
                        help=f"Flower's --max_tasks (default: ours, {FLOWER_MAX_TASKS:,}; Flower's own: 100,000)")
    args = parser.parse_args()
    if args.jobs < 2 or args.max_tasks < 1:
        parser.error("--jobs must be at least 2 and --max-tasks at least 1")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        samples = soak(args.jobs, args.max_tasks, Path(tmp))
    print(f"flower soak: {args.jobs:,} jobs, Flower --max_tasks={args.max_tasks:,} "
          f"({time.perf_counter() - started:.0f} s)\n")
    print("| jobs | Flower RSS | tasks held |\n|---|---|---|")
    for sent, rss, held in samples:
        print(f"| {sent:,} | {rss / 1024:.1f} MiB | {held:,} |")

    def growth(first: tuple[int, int, int], last: tuple[int, int, int]) -> float:
        return (last[1] - first[1]) / (last[0] - first[0])  # kB per job

    half = min(samples[:-1], key=lambda s: abs(s[0] - args.jobs / 2))
    print(f"\nRSS growth: {growth(samples[0], samples[-1]):.2f} KB/job over the soak, "
          f"{growth(half, samples[-1]):.2f} KB/job from {half[0]:,} jobs to the end")
    if half[0] < 2 * args.max_tasks:
        print(f"(not checked: the second half starts before {2 * args.max_tasks:,} jobs, 2 x max_tasks)")
        return 0
    bounded = all(held <= args.max_tasks for _, _, held in samples)
    flat = growth(half, samples[-1]) <= LIMIT_KB_PER_JOB
    print(f"holds at most {args.max_tasks:,} tasks: {'yes' if bounded else '**no**'}; "
          f"second-half growth within {LIMIT_KB_PER_JOB} KB/job: {'yes' if flat else '**no**'}")
    return 0 if bounded and flat else 1


if __name__ == "__main__":
    sys.exit(main())

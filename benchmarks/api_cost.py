"""What the front door costs per job, and where it goes: the stack as `make run` starts it,
digits jobs from 64 concurrent clients (benchmarks.load), CPU milliseconds per job of every
process from /proc, Redis's commands per job by command, and (with --profile) py-spy's
samples of the API process during the measured run, summed by the frames they pass through.

    make bench-api                                   # multipart, 2,000 jobs
    make bench-api ARGS="--upload raw --profile"     # a raw body; and the profile
    make bench-api ARGS="--api-workers 2"            # two uvicorn processes

The profile is py-spy's `record --format raw` (collapsed stacks, --nonblocking so the API is
not paused); `inclusive` is the share of the API's samples whose stack passes through a
frame: the submit path, the long-poll, the middlewares, uvicorn's HTTP parsing.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from benchmarks.costs import CostMeter
from benchmarks.load import closed_loop
from benchmarks.run import REPO_MODELS, Bench, digit_images, mean_batch

# Frames worth naming in the breakdown: (label, a substring of py-spy's "function (file:line)").
FRAMES = [
    ("route: submit_job (POST /jobs)", "submit_job ("),
    ("route: submit_raw_job (POST /jobs, raw body)", "submit_raw_job ("),
    ("  multipart parsing (Starlette form)", "_get_form ("),
    ("  submit(): prepare + record", "submit (api/submit.py"),
    ("    stored_input: decode + preprocess", "stored_input ("),
    ("    store.create (Redis script)", "create (shared/jobstore"),
    ("    infer_message (Celery message)", "infer_message ("),
    ("  admit: rate limit", "admit ("),
    ("  _answer: Prefer: wait long-poll", "_answer ("),
    ("route: get_job (GET /jobs/{id})", "get_job ("),
    ("waiter (long-poll wake-ups)", "api/waiter.py"),
    ("FastAPI: solve_dependencies", "solve_dependencies ("),
    ("FastAPI: serialize_response", "serialize_response ("),
    ("door (auth before the body)", "api/door.py"),
    ("access log", "api/access_log.py"),
    ("HTTP metrics", "api/metrics.py"),
    ("body limits", "api/limits.py"),
    ("uvicorn httptools protocol", "httptools_impl.py"),
    ("redis-py (parse + send)", "(redis/"),
    ("asyncio event loop", "asyncio/"),
    ("pydantic", "(pydantic"),
]


def profile_summary(raw: Path) -> list[str]:
    total, hits = 0, Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        for label, needle in FRAMES:
            if needle in stack:
                hits[label] += int(count)
    if not total:
        return ["(no samples)"]
    return [f"| {label} | {100 * hits[label] / total:.1f} % |" for label, _ in FRAMES] + [f"| samples | {total} |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--upload", choices=("multipart", "raw"), default="multipart")
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="py-spy the API process during the run")
    parser.add_argument("--keep-profile", metavar="FILE", help="also write py-spy's collapsed stacks here")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        images = digit_images(args.jobs)
        try:
            with bench.stack(REPO_MODELS, "digits", api_workers=args.api_workers) as (api, worker, key, pids):
                closed_loop(api.url, images[:200], "digits", args.concurrency, key, upload=args.upload)
                before = httpx.get(worker.metrics_url).text
                commands = bench.redis.client().info("commandstats")
                spy = None
                if args.profile:
                    raw = Path(tmp) / "api.raw"
                    spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--nonblocking",
                                            "--format", "raw", "--rate", "200", "--subprocesses",
                                            "--pid", str(pids["API"]), "-o", str(raw)],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    time.sleep(1)
                meter = CostMeter(pids, bench.redis.client())
                result = closed_loop(api.url, images, "digits", args.concurrency, key, upload=args.upload)
                costs = meter.per_job(len(images))
                if spy is not None:
                    spy.send_signal(2)
                    spy.wait(30)
                after_commands = bench.redis.client().info("commandstats")
                after = httpx.get(worker.metrics_url).text
            profile = profile_summary(raw) if args.profile else []
            if args.profile and args.keep_profile:
                Path(args.keep_profile).write_text(raw.read_text())
        finally:
            bench.close()
    print(f"{args.jobs} digits jobs, {args.concurrency} clients, upload {args.upload}, API_WORKERS "
          f"{args.api_workers}: {result['jobs_per_s']:.0f} jobs/s, p50 {result['p50'] * 1000:.0f} ms, "
          f"succeeded {result['succeeded']}, mean batch {mean_batch(before, after):.1f}")
    print("CPU ms per job: " + ", ".join(f"{name} {ms:.2f}" for name, ms in costs["cpu_ms"].items())
          + f"; service {costs['service_cpu_ms']:.2f}")
    per_command = {name: (int(stats["calls"]) - int(commands.get(name, {}).get("calls", 0))) / args.jobs
                   for name, stats in after_commands.items()}
    print(f"Redis commands per job: {costs['redis_commands']:.1f}: " + ", ".join(
        f"{name.removeprefix('cmdstat_')} {n:.2f}" for name, n in sorted(per_command.items(), key=lambda kv: -kv[1])
        if n >= 0.05))
    if args.profile:
        print("| API frames (inclusive) | share of samples |\n|---|---|")
        print("\n".join(profile))


if __name__ == "__main__":
    main()

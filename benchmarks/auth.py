"""What API keys and rate limiting cost on the submit path, measured side by side.

    make bench-auth            # = .venv/bin/python -m benchmarks.auth
    .venv/bin/python -m benchmarks.auth --requests 3000 --rounds 5

Two API processes on one Redis, one with AUTH_DISABLED=true and one with keys on (the key
has a rate limit it never reaches, so every request runs the authentication and the rate
script), take the same sequential POST /jobs of one small PNG, alternating in rounds. No
worker: jobs stay queued (MAX_QUEUED_JOBS is lifted). Reported per request: wall time and
the API process's CPU time (from /proc), medians over the rounds, and their difference.
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from shared.apikeys import create_key
from shared.processes import Api, RedisServer
from tests.utils.samples import heldout_png

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def round_of(api: Api, client: httpx.Client, image: bytes, requests: int) -> tuple[float, float]:
    """(wall µs, API CPU µs) per request."""
    assert api.proc.pid
    cpu, started = cpu_seconds(api.proc.pid), time.perf_counter()
    for _ in range(requests):
        response = client.post("/jobs", files={"file": ("d.png", image)})
        assert response.status_code == 202, response.text
    wall = time.perf_counter() - started
    return wall / requests * 1e6, (cpu_seconds(api.proc.pid) - cpu) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per round and API")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    image = heldout_png(7)
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp))
        redis.start()
        settings = {"max_queued_jobs": 0, "result_cache_ttl_seconds": 0, "ops_port": 0}
        open_api = Api(redis.url, Path(tmp), auth_disabled=True, **settings)
        keyed_api = Api(redis.url, Path(tmp), **settings)
        key, _ = create_key(redis.url, "bench", rate_limit=10**9, max_queued=10**9)
        try:
            clients = {"off": httpx.Client(base_url=open_api.url, timeout=30),
                       "on": httpx.Client(base_url=keyed_api.url, timeout=30,
                                          headers={"Authorization": f"Bearer {key}"})}
            apis = {"off": open_api, "on": keyed_api}
            for name in apis:  # warm both
                round_of(apis[name], clients[name], image, 200)
            results: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
            for _ in range(args.rounds):
                for name in ("off", "on"):
                    results[name].append(round_of(apis[name], clients[name], image, args.requests))
        finally:
            open_api.stop()
            keyed_api.stop()
            redis.stop()
    median = {name: (statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows))
              for name, rows in results.items()}
    print(f"POST /jobs, {args.rounds} rounds x {args.requests} sequential requests per API (medians)\n")
    print("| auth | wall per request | API CPU per request |\n|---|---|---|")
    for name, label in (("off", "AUTH_DISABLED=true"), ("on", "API key + rate limit")):
        print(f"| {label} | {median[name][0]:,.0f} µs | {median[name][1]:,.0f} µs |")
    print(f"| **cost of auth + rate limit** | **{median['on'][0] - median['off'][0]:+,.0f} µs** | "
          f"**{median['on'][1] - median['off'][1]:+,.0f} µs** |")


if __name__ == "__main__":
    main()

"""What API keys and rate limiting cost on the submit path, measured side by side.

    make bench-auth            # = .venv/bin/python -m benchmarks.auth
    .venv/bin/python -m benchmarks.auth --requests 3000 --rounds 5

Two API processes on one Redis, one with AUTH_DISABLED=true and one with keys on (the key
has a rate limit it never reaches, so every request runs the authentication and the rate
script), take the same POST /jobs of one small PNG, one request to each in turn, so that
both see the same machine (these shared cores drift by more than the cost measured). No
worker: jobs stay queued (MAX_QUEUED_JOBS is lifted). Reported per request, for each round:
median wall time and the API process's CPU time (from /proc); then the medians over the
rounds, and their difference.
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from devstack.processes import Api, RedisServer
from shared.keystore import create_key
from tests.utils.samples import heldout_png

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def round_of(apis: dict[str, Api], clients: dict[str, httpx.Client], image: bytes,
             requests: int) -> dict[str, tuple[float, float]]:
    """Per API: (median wall µs, API CPU µs) per request, the APIs taking turns."""
    cpu = {name: cpu_seconds(api.proc.pid) for name, api in apis.items() if api.proc.pid}
    walls: dict[str, list[float]] = {name: [] for name in apis}
    for _ in range(requests):
        for name, client in clients.items():
            started = time.perf_counter()
            response = client.post("/jobs", files={"file": ("d.png", image)})
            walls[name].append(time.perf_counter() - started)
            assert response.status_code == 202, response.text
    return {name: (statistics.median(walls[name]) * 1e6,
                   (cpu_seconds(api.proc.pid or 0) - cpu[name]) / requests * 1e6) for name, api in apis.items()}


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
        key, _ = create_key(redis.url, "bench", rate_limit=10**9, max_queued=10**9, max_records=0)
        try:
            clients = {"off": httpx.Client(base_url=open_api.url, timeout=30),
                       "on": httpx.Client(base_url=keyed_api.url, timeout=30,
                                          headers={"Authorization": f"Bearer {key}"})}
            apis = {"off": open_api, "on": keyed_api}
            round_of(apis, clients, image, 200)  # warm both
            results: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
            for _ in range(args.rounds):
                for name, figures in round_of(apis, clients, image, args.requests).items():
                    results[name].append(figures)
        finally:
            open_api.stop()
            keyed_api.stop()
            redis.stop()
    median = {name: (statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows))
              for name, rows in results.items()}
    print(f"POST /jobs, {args.rounds} rounds x {args.requests} requests per API, taking turns (medians)\n")
    print("| auth | wall per request | API CPU per request |\n|---|---|---|")
    for name, label in (("off", "AUTH_DISABLED=true"), ("on", "API key + rate limit")):
        print(f"| {label} | {median[name][0]:,.0f} µs | {median[name][1]:,.0f} µs |")
    print(f"| **cost of auth + rate limit** | **{median['on'][0] - median['off'][0]:+,.0f} µs** | "
          f"**{median['on'][1] - median['off'][1]:+,.0f} µs** |")


if __name__ == "__main__":
    main()

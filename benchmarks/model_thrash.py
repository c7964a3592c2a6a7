"""Model thrash (README: Model versions without restarts): key B's latency alone, and while
key A alternates digits:1 and digits:2, side by side in one run. One worker,
MAX_LOADED_VERSIONS=2, a MODEL_DIR of three copies of digits:1 (3 the default, 1 and 2 marked
loadable by an admin: the worst an admin allows), keys on, result cache off.

    make bench-models              # = .venv/bin/python -m benchmarks.model_thrash
    make bench-models ARGS="--seconds 10 --cooldown 5"

B submits `--rate` jobs a second to the default for `--seconds`; then again while A submits
as many to the default too (the same load, no switching); then while A switches version
every job. B's latency is submission to finished (server
stamps). Loads: the worker's on-demand loads (its log), against A's version switches.
"""

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from devstack.commands import ROOT
from devstack.processes import Api, RedisServer, Worker, wait_for
from shared.keystore import create_key

IMAGE = (ROOT / "models" / "digits" / "examples" / "7.png").read_bytes()


SCENARIOS: list[tuple[str, list[str]]] = [
    ("B alone", []),
    ("B while A submits to digits:3 too (the same load, no switching)", ["digits"]),
    ("B while A alternates digits:1/digits:2", ["digits:1", "digits:2"]),
]


def stamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def model_dir(root: Path) -> Path:
    for version in ("1", "2", "3"):
        folder = root / "digits" / version
        shutil.copytree(ROOT / "models" / "digits" / "1", folder)
        record = json.loads((folder / "manifest.json").read_text())
        (folder / "manifest.json").write_text(json.dumps({**record, "version": version}))
    return root


class Stack:
    def __init__(self, workdir: Path, redis: RedisServer, models: Path, cooldown: float | None):
        env: dict[str, Any] = dict(model_dir=models, result_cache_ttl_seconds=0, max_loaded_versions=2)
        if cooldown is not None:
            env["model_load_cooldown_seconds"] = cooldown
        self.worker = Worker(redis.url, workdir, **env)
        self.api = Api(redis.url, workdir, **env)
        self.keys = {name: create_key(redis.url, name, rate_limit=10**6, max_queued=0, admin=name == "admin")[0]
                     for name in ("a", "b", "admin")}
        for version in ("1", "2"):  # where the route exists: before it, any version loaded on demand
            self.call("admin", "post", f"/models/digits/versions/{version}/loadable")

    def call(self, key: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.api.url}{path}", timeout=60,
                             headers={"Authorization": f"Bearer {self.keys[key]}"}, **kwargs)

    def close(self) -> None:
        self.api.stop()
        self.worker.stop()

    def steady(self, key: str, models: list[str], rate: float, seconds: float, out: list[str]) -> None:
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            answer = self.call(key, "post", "/jobs", files={"file": ("7.png", IMAGE)},
                               data={"model": models[len(out) % len(models)]})
            answer.raise_for_status()
            out.append(answer.json()["id"])
            time.sleep(max(0.0, started + len(out) / rate - time.monotonic()))

    def finished(self, key: str, job_id: str) -> dict:
        def done() -> dict | None:
            job = self.call(key, "get", f"/jobs/{job_id}", params={"wait": 30}).json()
            return job if job["status"] in ("succeeded", "failed", "cancelled") else None

        return wait_for(done, 600, job_id)

    def run(self, rate: float, seconds: float, a_models: list[str]) -> dict:
        """B at `rate` for `seconds`; A as well, cycling through `a_models` (none: B alone)."""
        loads_before = self.loads()
        a_ids: list[str] = []
        b_ids: list[str] = []
        a = threading.Thread(target=self.steady, args=("a", a_models, rate, seconds, a_ids))
        if a_models:
            a.start()
        self.steady("b", ["digits"], rate, seconds, b_ids)
        if a_models:
            a.join()
        b_jobs = [self.finished("b", job_id) for job_id in b_ids]
        a_jobs = [self.finished("a", job_id) for job_id in a_ids]
        return {"b": [stamp(j["finished_at"]) - stamp(j["created_at"]) for j in b_jobs],
                "b_ok": sum(j["status"] == "succeeded" for j in b_jobs), "b_n": len(b_jobs),
                "a_ok": sum(j["status"] == "succeeded" for j in a_jobs), "a_n": len(a_jobs),
                "loads": self.loads() - loads_before}

    def loads(self) -> int:
        text = self.worker.log.read_text()
        return text.count("on demand (jobs wait for it)") + text.count("on demand (a job asks for it)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each scenario submits")
    parser.add_argument("--rate", type=float, default=10.0, help="jobs a second, per key")
    parser.add_argument("--cooldown", type=float, default=None, help="MODEL_LOAD_COOLDOWN_SECONDS (default: its)")
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        models = model_dir(workdir / "models")
        redis = RedisServer(workdir)
        redis.start()
        try:
            for name, a_models in SCENARIOS:
                redis.client().flushall()
                stack = Stack(workdir, redis, models, args.cooldown)
                try:
                    stack.run(args.rate, 2, [])  # warm: the first requests of a process are slower
                    rows[name] = stack.run(args.rate, args.seconds, a_models)
                finally:
                    stack.close()
        finally:
            redis.stop()
    cooldown = "its default" if args.cooldown is None else f"{args.cooldown:g}"
    print(f"B: {args.rate:g} jobs/s to digits (digits:3) for {args.seconds:g} s; A: as many, switching version every "
          f"job; MAX_LOADED_VERSIONS=2, MODEL_LOAD_COOLDOWN_SECONDS {cooldown}\n")
    print("| scenario | B p50 | B p99 | B succeeded | A succeeded | on-demand loads |")
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {1000 * p(row['b'], 50):.0f} ms | {1000 * p(row['b'], 99):.0f} ms | "
              f"{row['b_ok']}/{row['b_n']} | {row['a_ok']}/{row['a_n']} | {row['loads']} |")
    alone, loaded, thrashed = rows.values()
    print(f"\nB's p99 while A alternates / alone: {p(thrashed['b'], 99) / p(alone['b'], 99):.2f}x; "
          f"/ while A submits as much without switching: {p(thrashed['b'], 99) / p(loaded['b'], 99):.2f}x")


if __name__ == "__main__":
    main()

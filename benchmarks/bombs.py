"""Decompression bombs against a real API: 32 concurrent uploads of a small image of one
colour that declares millions of pixels. The bounds: throughout each round the API process's
RSS (sampled every 10 ms, and the kernel's high-water mark) stays under 300 MB and GET /healthz
(probed every 20 ms) answers within 100 ms; the exit status is 1 if a round breaks one.

Rounds: a 40-Mpx PNG (refused with 413 from its header, nothing decoded), then PNG (RGB,
RGBA) and JPEG bombs just under MAX_IMAGE_PIXELS (16 Mpx), which are decoded, in the API's
bounded decode pool (api/decoding.py). Then the hostile inputs that once answered 500
(devstack.hostile): a PNG with a garbage eXIf chunk (422), a 16-bit big-endian TIFF (202), a
JSON body nested 100,000 deep (422), and a batch of two good files and a garbage-eXIf one
last (202, the bad one failing in its item). A round also fails on any 5xx but a busy 503.
One API process for all rounds, and no worker: the accepted jobs stay queued.

    make bench-bombs                    # = .venv/bin/python -m benchmarks.bombs
    .venv/bin/python -m benchmarks.bombs --bombs 64
"""

import argparse
import asyncio
import io
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from devstack.hostile import deep_json, png_with_garbage_exif, tiff_16bit_big_endian
from devstack.processes import Api, RedisServer

RSS_LIMIT_MB = 300.0
HEALTHZ_LIMIT_MS = 100.0
ROUNDS = [  # name, format, mode, width x height (the default MAX_IMAGE_PIXELS is 16,000,000)
    ("PNG 40 Mpx", "PNG", "L", 6400, 6250),
    ("PNG 15.9 Mpx", "PNG", "RGB", 4000, 3975),
    ("PNG 15.9 Mpx", "PNG", "RGBA", 4000, 3975),  # costliest: Image.reduce makes a premultiplied copy
    ("JPEG 15.9 Mpx", "JPEG", "RGB", 4000, 3975),
]


# name, what is sent (file: one upload to POST /jobs; json: the body of POST /jobs; batch:
# POST /jobs/batch with two good files and this one last), the bytes.
HOSTILE = [
    ("PNG garbage eXIf", "file", png_with_garbage_exif()),
    ("TIFF 16-bit big-endian", "file", tiff_16bit_big_endian()),
    ("JSON nested 100,000 deep", "json", deep_json()),
    ("batch, garbage eXIf last", "batch", png_with_garbage_exif()),
]


def bomb(fmt: str, mode: str, width: int, height: int) -> bytes:
    """One colour, compressed as hard as the format goes."""
    out = io.BytesIO()
    image = Image.new(mode, (width, height), "#c82828")
    image.save(out, fmt, **({"compress_level": 9} if fmt == "PNG" else {"quality": 10}))
    return out.getvalue()


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """/proc/<pid>/status's VmRSS (or VmHWM, its high-water mark), in MB (10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / 1e6  # the kernel's "kB" are KiB
    raise LookupError(field)


class Every(threading.Thread):
    """Calls `fn` every `period` seconds until stopped (the RSS sampler)."""

    def __init__(self, period: float, fn):
        super().__init__(daemon=True)
        self.period, self.fn, self.done = period, fn, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.fn()
            self.done.wait(self.period)

    def stop(self) -> None:
        self.done.set()
        self.join()


@dataclass
class Round:
    name: str
    size_kb: float
    statuses: Counter
    rss_before_mb: float
    rss_peak_mb: float  # the highest of the 10 ms samples and the kernel's high-water mark
    healthz_max_ms: float
    healthz_p99_ms: float
    healthz_failed: int
    wall_s: float

    @property
    def answered(self) -> bool:
        """Every upload got an answer, and no 5xx but a busy 503."""
        return all(code.isdigit() and (code[0] in "24" or code == "503") for code in self.statuses)

    @property
    def ok(self) -> bool:
        return (self.rss_peak_mb < RSS_LIMIT_MB and self.healthz_max_ms < HEALTHZ_LIMIT_MS and not self.healthz_failed
                and self.answered)


def request(data: bytes, kind: str, fmt: str) -> dict:
    """The keyword arguments of one upload's POST (`kind`: see HOSTILE)."""
    if kind == "json":
        return {"url": "/jobs", "content": data, "headers": {"content-type": "application/json"}}
    if kind == "batch":
        good = bomb("PNG", "L", 28, 28)
        return {"url": "/jobs/batch", "files": [("files", ("a.png", good)), ("files", ("b.png", good)),
                                                ("files", (f"bad.{fmt.lower()}", data))]}
    return {"url": "/jobs", "files": {"file": (f"bomb.{fmt.lower()}", data)}}


async def send(url: str, data: bytes, fmt: str, bombs: int, kind: str = "file") -> Counter:
    """`bombs` uploads at once; their status codes (or exception names) counted."""
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=bombs)) as client:
        async def one() -> str:
            try:
                response = await client.post(**request(data, kind, fmt))
                return str(response.status_code)
            except httpx.HTTPError as exc:
                return type(exc).__name__

        return Counter(await asyncio.gather(*(one() for _ in range(bombs))))


def probe(url: str, stop, out) -> None:
    """GET /healthz every ~20 ms until `stop` is set, then send (latencies in ms, failures).
    A process of its own: the load's event loop cannot delay it (the GIL)."""
    latencies, failed = [], 0
    with httpx.Client(base_url=url, timeout=5) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                failed += client.get("/healthz").status_code != 200
            except httpx.HTTPError:
                failed += 1
            latencies.append((time.perf_counter() - started) * 1000)
            stop.wait(0.02)
    out.send((latencies, failed))


def run_round(api: Api, name: str, fmt: str, mode: str, width: int, height: int, bombs: int) -> Round:
    return measure(api, f"{name} ({width}x{height} {mode})", bomb(fmt, mode, width, height), fmt, bombs)


def measure(api: Api, name: str, data: bytes, fmt: str, bombs: int, kind: str = "file") -> Round:
    """`bombs` concurrent uploads of `data`, with the API's RSS and /healthz watched."""
    pid = api.proc.pid
    before = rss_mb(pid)
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        hwm = True
    except OSError:  # not allowed here: the samples alone
        hwm = False
    stop, (results, out) = multiprocessing.Event(), multiprocessing.Pipe(duplex=False)
    prober = multiprocessing.Process(target=probe, args=(api.url, stop, out))
    prober.start()  # forked before the sampler thread starts
    samples: list[float] = []
    sampler = Every(0.01, lambda: samples.append(rss_mb(pid)))
    sampler.start()
    time.sleep(0.1)  # the probe's first answers, before the load
    started = time.perf_counter()
    statuses = asyncio.run(send(api.url, data, fmt, bombs, kind))
    wall = time.perf_counter() - started
    time.sleep(0.1)  # a last probe and sample after the last answer
    stop.set()
    latencies, failed = results.recv()
    prober.join()
    sampler.stop()
    if set(statuses) - {"202", "413", "422", "503"}:  # something broke: show why
        print(api.log.read_text()[-5000:], file=sys.stderr)
    peak = max([*samples, rss_mb(pid, "VmHWM")] if hwm else samples)
    return Round(name, len(data) / 1000, statuses, before, peak,
                 max(latencies), float(np.percentile(latencies, 99)), failed, wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bombs", type=int, default=32, help="concurrent uploads per round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp))
        redis.start()
        try:
            # Keys off: decoding is measured here (what keys cost: make bench-auth).
            # No 503 for the queue, nor for bodies at once from one address (MAX_BODIES_PER_CLIENT).
            api = Api(redis.url, Path(tmp), max_queued_jobs=100_000, auth_disabled=True,
                      max_bodies_per_client=args.bombs, max_bodies=args.bombs)
            try:
                rounds = [run_round(api, *spec, bombs=args.bombs) for spec in ROUNDS]
                rounds += [measure(api, name, data, "PNG", args.bombs, kind) for name, kind, data in HOSTILE]
            finally:
                api.stop()
        finally:
            redis.stop()
    print(f"\n{args.bombs} concurrent bombs per round; bounds: API RSS < {RSS_LIMIT_MB:.0f} MB, GET /healthz < "
          f"{HEALTHZ_LIMIT_MS:.0f} ms (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)\n")
    print("| round | upload | statuses | RSS before | peak RSS | /healthz slowest | /healthz p99 | wall | within |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rounds:
        statuses = ", ".join(f"{count}x {code}" for code, count in sorted(r.statuses.items()))
        print(f"| {r.name} | {r.size_kb:.0f} KB | {statuses} | {r.rss_before_mb:.0f} MB | {r.rss_peak_mb:.0f} MB | "
              f"{r.healthz_max_ms:.1f} ms{f' ({r.healthz_failed} failed)' if r.healthz_failed else ''} | "
              f"{r.healthz_p99_ms:.1f} ms | {r.wall_s:.2f} s | {'yes' if r.ok else '**no**'} |")
    sys.exit(0 if all(r.ok for r in rounds) else 1)


if __name__ == "__main__":
    main()

"""Unauthenticated uploads against a real API (issue #19, 1): 32 concurrent 60 MB multipart
POSTs with no key, each sent as fast as the socket takes it (or at --rate bytes/s). The
bounds: the API process's RSS (sampled every 10 ms) grows by less than 20 MB, it holds no
byte in its temp dir (TMPDIR, a folder of its own: spooled parts are unnamed files, so the
process's open descriptors into it are summed), and GET /healthz (probed every 20 ms, from a
process of its own) answers within 100 ms; the exit status is 1 if one breaks.

Each upload reports how many of its bytes the socket took before the API answered 401 and
closed the connection (the API reads at most uvicorn's 64 KiB buffer of each; the rest is
the kernel's socket buffers).

    make bench-door                     # = .venv/bin/python -m benchmarks.door
    .venv/bin/python -m benchmarks.door --uploads 64 --rate 1000000
"""

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.bombs import Every, probe, rss_mb
from devstack.processes import Api, RedisServer

MB = 1_000_000
RSS_GROWTH_LIMIT_MB = 20.0
HEALTHZ_LIMIT_MS = 100.0
CHUNK = 256 * 1024


def held_in(pid: int, folder: Path) -> int:
    """Bytes of the files the process holds open in `folder` (spooled parts are unnamed)."""
    total = 0
    fds = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fds):
        with contextlib.suppress(OSError):  # closed meanwhile
            if os.readlink(fds / fd).startswith(str(folder)):
                total += os.stat(fds / fd).st_size
    return total + sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


async def upload(port: int, size: int, rate: float) -> tuple[str, int]:
    """One unauthenticated multipart POST /jobs/batch of `size` bytes: its answer's status (or
    how it ended) and the bytes the socket took before it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (f"POST /jobs/batch HTTP/1.1\r\nHost: bench\r\nContent-Length: {size}\r\n"
            "Content-Type: multipart/form-data; boundary=b0undary\r\n\r\n"
            "--b0undary\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n\r\n").encode()
    chunk, sent = b"\0" * CHUNK, 0
    answer = asyncio.create_task(reader.readline())
    try:
        writer.write(head)
        while sent < size and not answer.done():
            writer.write(chunk)
            await writer.drain()
            sent += CHUNK
            if rate:
                await asyncio.sleep(CHUNK / rate)
        status_line = await asyncio.wait_for(answer, 30)
        outcome = status_line.split()[1].decode() if status_line else "closed"
    except (ConnectionError, TimeoutError) as exc:
        outcome = type(exc).__name__
        if answer.done() and not answer.exception() and answer.result():
            outcome = answer.result().split()[1].decode()
    finally:
        answer.cancel()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return outcome, sent


async def flood(port: int, uploads: int, size: int, rate: float) -> list[tuple[str, int]]:
    return await asyncio.gather(*(upload(port, size, rate) for _ in range(uploads)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=32, help="concurrent unauthenticated uploads")
    parser.add_argument("--size-mb", type=int, default=60, help="each upload's declared body (MB)")
    parser.add_argument("--rate", type=float, default=0, help="bytes/s per upload (0: as fast as it goes)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "api-tmp"
        folder.mkdir()
        redis = RedisServer(Path(tmp))
        redis.start()
        try:
            api = Api(redis.url, Path(tmp), tmpdir=folder)
            try:
                result = run(api, folder, args)
            finally:
                api.stop()
        finally:
            redis.stop()
    sys.exit(0 if result else 1)


def run(api: Api, folder: Path, args: argparse.Namespace) -> bool:
    pid = api.proc.pid
    before = rss_mb(pid)
    stop, (results, out) = multiprocessing.Event(), multiprocessing.Pipe(duplex=False)
    prober = multiprocessing.Process(target=probe, args=(api.url, stop, out))
    prober.start()  # forked before the sampler thread starts
    rss: list[float] = []
    held: list[int] = []
    sampler = Every(0.01, lambda: (rss.append(rss_mb(pid)), held.append(held_in(pid, folder))))
    sampler.start()
    time.sleep(0.2)  # the probe's first answers, before the load
    started = time.perf_counter()
    outcomes = asyncio.run(flood(api.port, args.uploads, args.size_mb * MB, args.rate))
    wall = time.perf_counter() - started
    time.sleep(0.5)  # the last probes and samples after the last answer
    stop.set()
    latencies, failed = results.recv()
    prober.join()
    sampler.stop()
    after = rss_mb(pid)
    statuses = Counter(outcome for outcome, _ in outcomes)
    sent = [bytes_sent / MB for _, bytes_sent in outcomes]
    growth = max(rss) - before
    ok = growth < RSS_GROWTH_LIMIT_MB and max(held) == 0 and max(latencies) < HEALTHZ_LIMIT_MS and not failed
    print(f"\n{args.uploads} concurrent unauthenticated {args.size_mb} MB uploads (POST /jobs/batch, "
          f"{'as fast as it goes' if not args.rate else f'{args.rate / MB:g} MB/s each'}); bounds: RSS growth < "
          f"{RSS_GROWTH_LIMIT_MB:.0f} MB, nothing in TMPDIR, GET /healthz < {HEALTHZ_LIMIT_MS:.0f} ms (load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)\n")
    print("| answers | sent per upload before the close (median, max) | API RSS before / peak / after | "
          "TMPDIR peak | /healthz p50 / max | wall | within |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {', '.join(f'{n}x {s}' for s, n in sorted(statuses.items()))} | {np.median(sent):.2f} MB, "
          f"{max(sent):.2f} MB | {before:.0f} / {max(rss):.0f} / {after:.0f} MB | {max(held)} B | "
          f"{np.percentile(latencies, 50):.1f} / {max(latencies):.1f} ms"
          f"{f' ({failed} failed)' if failed else ''} | {wall:.2f} s | {'yes' if ok else '**no**'} |")
    return ok


if __name__ == "__main__":
    main()

"""Load generation over HTTP: jobs submitted concurrently, each result seen by the client.

aiohttp, not httpx: at 64 concurrent connections httpx's async pool alone used a whole core
here, and the load generator, not the service, set the pace.
"""

import asyncio
import time

import aiohttp
import numpy as np

TERMINAL = ("succeeded", "failed", "cancelled")


def media_type(image: bytes) -> str:
    """The Content-Type of a raw-body upload, from the image's own signature."""
    return "image/png" if image.startswith(b"\x89PNG") else "image/jpeg" if image.startswith(b"\xff\xd8") \
        else "application/octet-stream"


async def _submit(session: aiohttp.ClientSession, image: bytes, model: str, upload: str = "multipart",
                  ) -> tuple[float, dict]:
    """One job, submitted as a multipart form (`file`, `model`) or a raw body (`?model=`)."""
    started = time.perf_counter()
    if upload == "raw":
        request = session.post("/jobs", params={"model": model}, data=image,
                               headers={"Prefer": "wait=60", "Content-Type": media_type(image)})
    else:
        form = aiohttp.FormData()
        form.add_field("file", image, filename="x.png", content_type="application/octet-stream")
        form.add_field("model", model)
        request = session.post("/jobs", data=form, headers={"Prefer": "wait=60"})
    async with request as response:
        job = await response.json()
    while job.get("status") not in TERMINAL:
        async with session.get(f"/jobs/{job['id']}", params={"wait": "60"}) as response:
            job = await response.json()
    return time.perf_counter() - started, job


def _session(url: str, connections: int, key: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        base_url=url, connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=120), headers={"Authorization": f"Bearer {key}"},
    )


async def _closed_loop(url: str, images: list[bytes], model: str, concurrency: int, key: str, upload: str):
    pending = list(enumerate(images))
    results: list = [None] * len(images)
    async with _session(url, concurrency, key) as session:
        async def user():
            while pending:
                i, image = pending.pop()
                results[i] = await _submit(session, image, model, upload)

        started = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(concurrency)))
        return time.perf_counter() - started, results


def closed_loop(url: str, images: list[bytes], model: str, concurrency: int, key: str,
                upload: str = "multipart") -> dict:
    """`concurrency` clients, each submitting its next job when its last result is in
    (with API key `key`; `upload`: multipart or raw)."""
    wall, results = asyncio.run(_closed_loop(url, images, model, concurrency, key, upload))
    return summarize(wall, results)


async def _open_loop(url: str, images: list[bytes], model: str, rate: float, key: str, upload: str):
    async with _session(url, 100, key) as session:
        started = time.perf_counter()
        tasks = []
        for i, image in enumerate(images):
            await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(_submit(session, image, model, upload)))
        results = await asyncio.gather(*tasks)
        return time.perf_counter() - started, results


def open_loop(url: str, images: list[bytes], model: str, rate: float, key: str, upload: str = "multipart") -> dict:
    """Jobs arriving at a fixed rate, whatever the service does (light-load latency)."""
    wall, results = asyncio.run(_open_loop(url, images, model, rate, key, upload))
    return summarize(wall, results)


def summarize(wall: float, results: list) -> dict:
    latencies = np.array([latency for latency, _ in results])
    statuses = [job["status"] for _, job in results]
    return {
        "jobs": len(results),
        "jobs_per_s": len(results) / wall,
        "p50": float(np.percentile(latencies, 50)),
        "p95": float(np.percentile(latencies, 95)),
        "p99": float(np.percentile(latencies, 99)),
        "succeeded": statuses.count("succeeded"),
        "ids": [job["id"] for _, job in results],
    }

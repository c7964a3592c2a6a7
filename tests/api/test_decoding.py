"""Decoding is bounded: a huge image is refused from its header, a large one is decoded off
the event loop in a bounded pool, and no upload makes the API's memory balloon."""

import asyncio
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi import HTTPException
from PIL import Image

from api.decoding import DecodePool
from tests.utils.processes import start_api


def png(width: int, height: int, mode: str = "L") -> bytes:
    """A mostly blank picture with a dark bar: a few KB of PNG, width x height pixels decoded."""
    image = Image.new(mode, (width, height), 255 if mode == "L" else (255, 255, 255))
    image.paste(0 if mode == "L" else (0, 0, 0), (width // 3, height // 4, width // 2, 3 * height // 4))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024


def test_a_small_upload_declaring_40_megapixels_is_refused_from_its_header(api):
    bomb = png(8000, 5000)  # 40 Mpx, a few KB
    assert len(bomb) < 200_000
    started = time.monotonic()
    response = api.submit(bomb)
    assert response.status_code == 413
    assert "16000000" in response.json()["detail"]
    assert time.monotonic() - started < 1, "refused from the header, not after decoding"


def test_large_images_decode_off_the_loop_in_bounded_memory(redis_server, logdir):
    """Eight 16-Mpx scans at once (the pixel limit): the event loop keeps answering, memory
    stays bounded."""
    api = start_api(redis_server.url, logdir)
    photo = png(4000, 4000)
    try:
        before = peak_rss_mb(api.proc.pid)
        slowest = 0.0
        with ThreadPoolExecutor(8) as pool:
            submits = [pool.submit(api.submit, photo) for _ in range(8)]
            while not all(s.done() for s in submits):
                started = time.monotonic()
                assert api.http.get("/healthz").status_code == 200
                slowest = max(slowest, time.monotonic() - started)
                time.sleep(0.02)
        statuses = [s.result().status_code for s in submits]
        after = peak_rss_mb(api.proc.pid)
    finally:
        api.stop()
    assert set(statuses) <= {202, 503}, statuses
    assert 202 in statuses
    # 16 Mpx is 16 MB as uint8 (two decode at a time); a float32 copy alone is 64 MB, and
    # the old code made several per image. Measured: +66 MB.
    assert after - before < 150, (before, after)
    assert slowest < 0.5, f"/healthz took {slowest:.2f} s while images decoded"


def test_the_decode_pool_answers_503_when_full():
    release = threading.Event()

    async def scenario() -> None:
        pool = DecodePool(workers=1, backlog=1)
        running = [asyncio.create_task(pool.run(release.wait, 10)) for _ in range(2)]
        await asyncio.sleep(0.05)  # one decoding, one waiting: the pool is full
        with pytest.raises(HTTPException) as refused:
            await pool.run(np.zeros, 1)
        assert refused.value.status_code == 503
        assert refused.value.headers == {"Retry-After": "1"}
        release.set()
        await asyncio.gather(*running)
        assert (await pool.run(np.zeros, 1)).shape == (1,), "room again once they finished"
        pool.close()

    asyncio.run(scenario())

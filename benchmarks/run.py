"""Throughput and latency, every figure measured side by side in one run.

    make bench            # = .venv/bin/python -m benchmarks.run
    make bench ARGS=--quick

Starts its own redis-server, workers and API processes on loopback ports, then measures:
offline ceiling (model alone on preprocessed tensors), end to end over HTTP with batching
on and off, a bare-Celery no-op baseline, light-load latency, and a 10,000-job burst;
for the default digits model and a compute-bound MobileNetV2.
"""

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from benchmarks.load import closed_loop, open_loop
from benchmarks.mobilenet import write_model_dir
from benchmarks.noop import NOOP_TASK
from models.digits_data import split, varied_renderings
from shared.apikeys import create_key
from shared.jobstore import JobStore
from shared.preprocessing import pixels_of
from shared.processes import Api, RedisServer, Worker, sample, wait_for
from shared.queue import encode_pixels, make_celery
from shared.registry import Registry
from shared.settings import Settings

REPO_MODELS = Path(__file__).resolve().parent.parent / "models"


def offline_ceiling(model_dir: Path, name: str, max_batch: int, seconds: float = 1.0) -> dict:
    """The model alone, on ready tensors: images/s per bucket, best bucket, batch-1 latency."""
    from worker.runtime import LoadedModel

    model = LoadedModel(Registry(model_dir, name).resolve(None), max_batch)
    shape = model.manifest.input_shape
    rates = {}
    for size in model.buckets:
        batch = np.random.default_rng(0).uniform(0, 1, (size, *shape)).astype(np.float32)
        model.predict(batch)
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            model.predict(batch)
            runs += 1
        rates[size] = runs * size / (time.perf_counter() - started)
    best = max(rates, key=rates.get)
    return {"best_bucket": best, "images_per_s": rates[best], "batch1_s": 1 / rates[1], "rates": rates}


def digit_images(n: int) -> list[bytes]:
    _, images, _, _ = split()
    rng = np.random.default_rng(1)
    return [varied_renderings(images[i % len(images)], rng) for i in range(n)]


def photo_images(n: int) -> list[bytes]:
    rng = np.random.default_rng(2)
    out = []
    for _ in range(min(n, 32)):
        small = rng.integers(0, 256, (14, 14, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(small).resize((224, 224), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=85)
        out.append(buffer.getvalue())
    return [out[i % len(out)] for i in range(n)]


class Bench:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.redis = RedisServer(workdir)
        self.redis.start()

    def close(self):
        self.redis.stop()

    def key(self) -> str:
        """An API key the load never limits: the service is measured as deployed, keys on
        (their own cost: make bench-auth)."""
        return create_key(self.redis.url, f"bench-{time.monotonic_ns()}", rate_limit=10**9, max_queued=0)[0]

    @staticmethod
    def env(model_dir: Path, model: str) -> dict:
        # The result cache off: every job must be inferred, or repeats would flatter the figures.
        return dict(model_dir=model_dir, default_model=model, result_cache_ttl_seconds=0)

    def e2e(self, model_dir: Path, model: str, images: list[bytes], concurrency: int,
            warmup: int = 32, **worker_settings) -> dict:
        self.redis.client().flushall()
        worker = Worker(self.redis.url, self.workdir, **self.env(model_dir, model), **worker_settings)
        api = Api(self.redis.url, self.workdir, **self.env(model_dir, model))
        key = self.key()
        try:
            closed_loop(api.url, images[:warmup], model, concurrency, key)
            before = httpx.get(worker.metrics_url).text
            result = closed_loop(api.url, images, model, concurrency, key)
            after = httpx.get(worker.metrics_url).text
        finally:
            api.stop()
            worker.stop()
        ran = sum(sample(after, "inference_jobs_total", outcome=o) - sample(before, "inference_jobs_total", outcome=o)
                  for o in ("succeeded",))
        batches = sample(after, "inference_batch_size_count") - sample(before, "inference_batch_size_count")
        result.update(ran=int(ran), mean_batch=ran / batches if batches else 0.0)
        return result

    def light_load(self, model_dir: Path, model: str, images: list[bytes], rate: float, **worker_settings) -> dict:
        self.redis.client().flushall()
        worker = Worker(self.redis.url, self.workdir, **self.env(model_dir, model), **worker_settings)
        api = Api(self.redis.url, self.workdir, **self.env(model_dir, model))
        key = self.key()
        try:
            open_loop(api.url, images[:10], model, rate, key)
            return open_loop(api.url, images, model, rate, key)
        finally:
            api.stop()
            worker.stop()

    def noop_baseline(self, n: int, payload_args: list) -> dict:
        """Bare Celery: n no-op tasks sent by one producer, drained by one solo worker."""
        self.redis.client().flushall()
        settings = Settings(redis_url=self.redis.url)
        worker = Worker(self.redis.url, self.workdir, app="benchmarks.noop")
        producer = make_celery(settings, "bench")
        store = JobStore.connect(self.redis.url, settings.job_ttl_seconds, timeout=2)
        try:
            started = time.perf_counter()
            for i in range(n):
                producer.send_task(NOOP_TASK, args=[f"job{i}", *payload_args])
            wait_for(lambda: store.backlog(settings.queue_name)["total"] == 0, 600, "no-op drain")
            wall = time.perf_counter() - started
        finally:
            worker.stop()
        return {"jobs": n, "jobs_per_s": n / wall}


def row(model: str, figure: str, value: str, note: str = "") -> str:
    return f"| {model} | {figure} | {value} | {note} |"


def fmt_latency(r: dict) -> str:
    return f"p50 {r['p50'] * 1000:.1f} ms, p95 {r['p95'] * 1000:.1f} ms, p99 {r['p99'] * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs (a smoke run, noisier)")
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per digits end-to-end run")
    parser.add_argument("--burst", type=int, default=10_000, help="jobs in the burst run")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--skip-mobilenet", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.burst = 600, 1000
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    batch_max = 64
    lines = [f"cores: {os.cpu_count()}; load generator, API, worker and Redis on this machine", "",
             "| model | figure | value | ratio / note |", "|---|---|---|---|"]

    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        try:
            images = digit_images(args.jobs)
            ceiling = offline_ceiling(REPO_MODELS, "digits", batch_max)
            on = bench.e2e(REPO_MODELS, "digits", images, args.concurrency, max_batch_size=batch_max)
            off = bench.e2e(REPO_MODELS, "digits", images[: max(200, args.jobs // 4)], args.concurrency,
                            max_batch_size=1)
            manifest = Registry(REPO_MODELS, "digits").resolve(None)
            payload = [manifest.key, encode_pixels(pixels_of(images[0], manifest, 10**8)), time.time()]
            noop = bench.noop_baseline(args.jobs, payload)
            light = bench.light_load(REPO_MODELS, "digits", images[:100], rate=10, max_batch_size=batch_max)
            burst = bench.e2e(REPO_MODELS, "digits", digit_images(args.burst), args.concurrency,
                              max_batch_size=batch_max)

            model_ms = ceiling["batch1_s"] * 1000
            lines += [
                row("digits", f"offline ceiling (bucket {ceiling['best_bucket']})",
                    f"{ceiling['images_per_s']:,.0f} images/s", f"batch-1 model time {model_ms:.2f} ms"),
                row("digits", "end to end, batching on", f"{on['jobs_per_s']:,.0f} jobs/s",
                    f"{fmt_latency(on)}; mean batch {on['mean_batch']:.1f}"),
                row("digits", "bare Celery no-op baseline", f"{noop['jobs_per_s']:,.0f} jobs/s",
                    f"end to end / no-op = **{on['jobs_per_s'] / noop['jobs_per_s']:.2f}x**"),
                row("digits", "end to end, batching off (batch 1)", f"{off['jobs_per_s']:,.0f} jobs/s",
                    f"on / off = **{on['jobs_per_s'] / off['jobs_per_s']:.2f}x**; {fmt_latency(off)}"),
                row("digits", "light load, 10 jobs/s, submit to result", fmt_latency(light),
                    f"overhead beyond model time: p50 {light['p50'] * 1000 - model_ms:.1f} ms, "
                    f"p99 {light['p99'] * 1000 - model_ms:.1f} ms"),
                row("digits", f"burst of {burst['jobs']:,} jobs", f"{burst['jobs_per_s']:,.0f} jobs/s",
                    f"succeeded {burst['succeeded']:,}, distinct ids {len(set(burst['ids'])):,}, "
                    f"model runs {burst['ran']:,} (duplicates: {burst['ran'] - len(set(burst['ids']))})"),
            ]
            if not args.skip_mobilenet:
                mobilenet_dir = write_model_dir(Path(tmp) / "mobilenet-models")
                m_ceiling = offline_ceiling(mobilenet_dir, "mobilenet", 32, seconds=3.0)
                n = 96 if args.quick else 320
                # A compute-bound model wants a longer MAX_DELAY_MS than the default 2 ms: a
                # batch should fill while the previous one runs (about a batch's model time).
                m_on = bench.e2e(mobilenet_dir, "mobilenet", photo_images(n), 64, warmup=64,
                                 max_batch_size=m_ceiling["best_bucket"],
                                 max_delay_ms=int(1000 * m_ceiling["best_bucket"] / m_ceiling["images_per_s"]))
                lines += [
                    row("mobilenet_v2 224", f"offline ceiling (bucket {m_ceiling['best_bucket']})",
                        f"{m_ceiling['images_per_s']:,.1f} images/s", f"batch-1 {m_ceiling['batch1_s'] * 1000:.0f} ms"),
                    row("mobilenet_v2 224", "end to end, batching on", f"{m_on['jobs_per_s']:,.1f} jobs/s",
                        f"e2e / ceiling = **{m_on['jobs_per_s'] / m_ceiling['images_per_s']:.2f}x**; "
                        f"{fmt_latency(m_on)}"),
                ]
        finally:
            bench.close()
    print("\n".join(lines))


if __name__ == "__main__":
    main()

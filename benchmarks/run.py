"""Throughput, latency, batching and cost per job, every figure measured side by side in one run.

    make bench                   # = .venv/bin/python -m benchmarks.run
    make bench ARGS=--quick      # a smoke run, noisier
    make bench ARGS=--peers      # and Ray Serve beside it (pip install -e '.[peers]')

Starts its own redis-server and, for each end-to-end figure, the stack as `make run` starts
it (inference worker, webhook worker, API, Flower) on loopback ports, then measures:

- digits (the default model): the offline ceiling (the model alone on ready tensors); a
  backlog queued before the worker starts (mean batch from the worker's own histogram); end
  to end over HTTP with batching on and off; light-load latency; a burst; a bare-Celery no-op
  baseline; CPU milliseconds per job of every process (from /proc) and Redis's commands per
  job, and the single-Redis ceiling they imply;
- a CNN where batching matters on a CPU (benchmarks/cnn.py): batching on vs off;
- MobileNetV2 224x224, compute-bound: end to end vs its offline ceiling;
- with --peers, Ray Serve with @serve.batch serving the same model to the same load generator,
  and Ray Serve's own asynchronous inference (a @task_consumer on Celery/Redis) likewise.

The machine's speed drifts (2 shared cores): compare figures within one run, ratios first.
"""

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from benchmarks import cnn
from benchmarks.costs import CostMeter
from benchmarks.load import closed_loop, open_loop
from benchmarks.mobilenet import write_model_dir as write_mobilenet
from benchmarks.noop import NOOP_TASK
from devstack.processes import Api, Flower, RedisServer, Worker, free_port, sample, wait_for
from models.digits_data import split, varied_renderings
from shared.broker import infer_message, make_celery
from shared.codec import encode_pixels
from shared.jobstore import JobStore, NewJob, new_job_id, new_record
from shared.keystore import create_key
from shared.preprocessing import pixels_of
from shared.registry import Registry
from shared.settings import Settings

REPO_MODELS = Path(__file__).resolve().parent.parent / "models"
QUEUE = Settings().queue_name


def offline_ceiling(model_dir: Path, name: str, max_batch: int, seconds: float = 1.0) -> dict:
    """The model alone, on ready tensors: images/s per bucket, best bucket, batch-1 latency."""
    from worker.inference.model import LoadedModel

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


def photo_images(n: int, side: int = 224) -> list[bytes]:
    rng = np.random.default_rng(2)
    out = []
    for _ in range(min(n, 32)):
        small = rng.integers(0, 256, (14, 14, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(small).resize((side, side), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=85)
        out.append(buffer.getvalue())
    return [out[i % len(out)] for i in range(n)]


WORKER_CORE = (os.cpu_count() or 2) - 1


@contextmanager
def pinned(worker_pid: int, other_pids: list[int]):
    """The worker (every thread) on WORKER_CORE; the other processes and this one elsewhere."""
    others = ",".join(str(core) for core in range(WORKER_CORE)) or "0"
    subprocess.run(["taskset", "-a", "-p", "-c", str(WORKER_CORE), str(worker_pid)], check=True,
                   stdout=subprocess.DEVNULL)
    for pid in other_pids:
        for tree_pid in [pid, *children(pid)]:
            subprocess.run(["taskset", "-a", "-p", "-c", others, str(tree_pid)], check=True, stdout=subprocess.DEVNULL)
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(range(WORKER_CORE)) or {0})
    try:
        yield
    finally:
        os.sched_setaffinity(0, mine)


def children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def pinned_ceiling(model_dir: Path, name: str, max_batch: int, seconds: float) -> dict:
    """offline_ceiling in a process of its own on WORKER_CORE: the worker's core alone."""
    code = ("import json, sys; from pathlib import Path; from benchmarks.run import offline_ceiling; "
            f"print(json.dumps(offline_ceiling(Path({str(model_dir)!r}), {name!r}, {max_batch}, {seconds})))")
    out = subprocess.run(["taskset", "-c", str(WORKER_CORE), sys.executable, "-c", code], check=True,
                         capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["rates"] = {int(size): rate for size, rate in result["rates"].items()}
    return result


def mean_batch(before: str, after: str) -> float:
    batches = sample(after, "inference_batch_size_count") - sample(before, "inference_batch_size_count")
    jobs = sample(after, "inference_batch_size_sum") - sample(before, "inference_batch_size_sum")
    return jobs / batches if batches else 0.0


class Bench:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.redis = RedisServer(workdir)
        self.redis.start()

    def close(self):
        self.redis.stop()

    @staticmethod
    def env(model_dir: Path, model: str) -> dict:
        # The result cache off: every job must be inferred, or repeats would flatter the figures.
        return dict(model_dir=model_dir, default_model=model, result_cache_ttl_seconds=0)

    @contextmanager
    def stack(self, model_dir: Path, model: str, api_workers: int = 1, api_settings: dict | None = None,
              pin: bool = False, **worker_settings):
        """The stack as `make run` starts it, on a clean Redis, and an API key the load never
        limits (keys on, as deployed; their own cost: make bench-auth). `api_workers`: uvicorn
        processes. `pin`: the inference worker alone on the last core, everything else
        (API, webhook worker, Flower, Redis, this load generator) on the others (taskset)."""
        self.redis.client().flushall()
        env = self.env(model_dir, model)
        started: list = []
        try:
            started.append(worker := Worker(self.redis.url, self.workdir, **env, **worker_settings))
            started.append(webhooks := Worker(self.redis.url, self.workdir, app="worker.webhooks.app"))
            started.append(api := Api(self.redis.url, self.workdir, workers=api_workers, **env,
                                      **(api_settings or {})))
            started.append(flower := Flower(self.redis.url, self.workdir))
            key = create_key(self.redis.url, f"bench-{time.monotonic_ns()}", rate_limit=10**9, max_queued=0,
                             max_records=0)[0]
            pids = {"API": api.proc.pid, "inference worker": worker.proc.pid,
                    "webhook worker": webhooks.proc.pid, "Flower": flower.proc.pid}
            with pinned(worker.proc.pid, [api.proc.pid, webhooks.proc.pid, flower.proc.pid, self.redis.proc.pid]) \
                    if pin else nullcontext():
                yield api, worker, key, pids
        finally:
            for process in reversed(started):
                process.stop()

    def e2e(self, model_dir: Path, model: str, images: list[bytes], concurrency: int,
            warmup: int = 64, upload: str = "raw", api_workers: int = 1, api_settings: dict | None = None,
            pin: bool = False, **worker_settings) -> dict:
        """`upload`: raw bodies (as the client sends) or multipart forms."""
        with self.stack(model_dir, model, api_workers, api_settings, pin, **worker_settings) as (
                api, worker, key, pids):
            closed_loop(api.url, images[:warmup], model, concurrency, key, upload)
            before = httpx.get(worker.metrics_url).text
            meter = CostMeter(pids, self.redis.client())
            result = closed_loop(api.url, images, model, concurrency, key, upload)
            costs = meter.per_job(len(images))
            after = httpx.get(worker.metrics_url).text
        ran = sample(after, "inference_jobs_total", outcome="succeeded") - sample(
            before, "inference_jobs_total", outcome="succeeded")
        return {**result, **costs, "ran": int(ran), "mean_batch": mean_batch(before, after)}

    def backlog(self, model_dir: Path, model: str, image: bytes, jobs: int, **worker_settings) -> dict:
        """`jobs` queued (as the API queues them) before the worker starts: how fast it
        drains them, in what batches."""
        self.redis.client().flushall()
        manifest = Registry(model_dir, model).resolve(None)
        payload = encode_pixels(pixels_of(image, manifest, 10**8))
        store = JobStore.connect(self.redis.url, 3600, timeout=5)
        celery = make_celery(Settings(), "bench")
        for _ in range(jobs):
            job_id = new_job_id()
            tag, message = infer_message(celery, QUEUE, job_id, manifest.key, time.time())
            store.create(NewJob(new_record(manifest, job_id, input=payload, tag=tag), message), QUEUE)
        worker = Worker(self.redis.url, self.workdir, **self.env(model_dir, model), **worker_settings)
        try:
            # Ready once it consumes: it may have started on the backlog already.
            started = time.perf_counter()
            wait_for(lambda: store.backlog(QUEUE)["total"] == 0, 600, "the backlog to drain")
            wall = time.perf_counter() - started
            metrics = httpx.get(worker.metrics_url).text
        finally:
            worker.stop()
        return {"jobs": jobs, "jobs_per_s": jobs / wall, "mean_batch": mean_batch("", metrics)}

    def light_load(self, model_dir: Path, model: str, images: list[bytes], rate: float, **worker_settings) -> dict:
        with self.stack(model_dir, model, **worker_settings) as (api, _, key, _):
            open_loop(api.url, images[:10], model, rate, key, "raw")
            return open_loop(api.url, images, model, rate, key, "raw")

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

    def peer(self, model_dir: Path, model: str, images: list[bytes], concurrency: int, max_batch: int,
             light: list[bytes]) -> dict:
        """Ray Serve (@serve.batch) serving the same model to the same load generator."""
        from benchmarks.peers import ray_serve

        with ray_serve.start(model_dir, model, port=free_port(), max_batch_size=max_batch) as peer:
            closed_loop(peer.url, images[:64], model, concurrency, "")
            stats, cpu = peer.stats(), peer.cpu_seconds()
            result = closed_loop(peer.url, images, model, concurrency, "")
            after = peer.stats()
            result["cpu_ms"] = 1000 * (peer.cpu_seconds() - cpu) / len(images)
            result["mean_batch"] = (after["items"] - stats["items"]) / max(1, after["batches"] - stats["batches"])
            open_loop(peer.url, light[:10], model, 10, "")
            result["light"] = open_loop(peer.url, light, model, 10, "")
        return result

    def ray_async(self, model_dir: Path, model: str, images: list[bytes], concurrency: int, max_batch: int,
                  light: list[bytes]) -> dict:
        """Ray Serve's asynchronous inference (benchmarks/peers/ray_async.py: an ingress enqueues
        through the Celery adapter on its own redis-server, a @task_consumer runs the model, the
        ingress polls the task's status and answers the finished job) under the same load."""
        from benchmarks.peers import ray_async

        with ray_async.start(model_dir, model, port=free_port(), max_batch_size=max_batch) as peer:
            closed_loop(peer.url, images[:64], model, concurrency, "")
            stats, cpu = peer.stats(), peer.cpu_seconds()
            result = closed_loop(peer.url, images, model, concurrency, "")
            after = peer.stats()
            result["cpu_ms"] = 1000 * (peer.cpu_seconds() - cpu) / len(images)  # Redis included
            result["mean_batch"] = (after["items"] - stats["items"]) / max(1, after["batches"] - stats["batches"])
            open_loop(peer.url, light[:10], model, 10, "")
            result["light"] = open_loop(peer.url, light, model, 10, "")
        return result


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
    parser.add_argument("--peers", action="store_true", help="Ray Serve beside the service (the peers extra)")
    parser.add_argument("--skip-mobilenet", action="store_true")
    parser.add_argument("--skip-cnn", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.burst = 600, 1000
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    batch_max = Settings().max_batch_size
    lines = [f"cores: {os.cpu_count()}; load generator, API, workers, Flower and Redis on this machine; "
             f"MAX_BATCH_SIZE {batch_max}", "",
             "| model | figure | value | ratio / note |", "|---|---|---|---|"]

    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        try:
            images = digit_images(args.jobs)
            ceiling = offline_ceiling(REPO_MODELS, "digits", batch_max)
            backlog = bench.backlog(REPO_MODELS, "digits", images[0], max(8 * batch_max, args.jobs // 2))
            on = bench.e2e(REPO_MODELS, "digits", images, args.concurrency)
            # The front door's variants, each alone on the same load: multipart forms instead of
            # raw bodies; the API decoding every image (DECODE_IN_WORKER_MAX_BYTES=0); two API processes.
            form = bench.e2e(REPO_MODELS, "digits", images, args.concurrency, upload="multipart")
            api_decodes = bench.e2e(REPO_MODELS, "digits", images, args.concurrency,
                                    api_settings={"decode_in_worker_max_bytes": 0})
            two_apis = bench.e2e(REPO_MODELS, "digits", images, args.concurrency, api_workers=2)
            off = bench.e2e(REPO_MODELS, "digits", images[: max(300, args.jobs // 4)], args.concurrency,
                            max_batch_size=1)
            light = bench.light_load(REPO_MODELS, "digits", images[:100], rate=10)
            peer = bench.peer(REPO_MODELS, "digits", images, args.concurrency, batch_max, images[:100]) \
                if args.peers else None
            # Ray Serve 2.60's async inference (alpha) runs here offline: ray_async.py's docstring.
            rasync = bench.ray_async(REPO_MODELS, "digits", images, args.concurrency, batch_max, images[:100]) \
                if args.peers else None
            manifest = Registry(REPO_MODELS, "digits").resolve(None)
            payload = [manifest.key, encode_pixels(pixels_of(images[0], manifest, 10**8)), time.time()]
            noop = bench.noop_baseline(args.jobs, payload)
            burst = bench.e2e(REPO_MODELS, "digits", digit_images(args.burst), args.concurrency)

            model_ms = ceiling["batch1_s"] * 1000
            lines += [
                row("digits", f"offline ceiling (bucket {ceiling['best_bucket']})",
                    f"{ceiling['images_per_s']:,.0f} images/s", f"batch-1 model time {model_ms:.2f} ms"),
                row("digits", f"backlog of {backlog['jobs']:,} queued before the worker starts",
                    f"{backlog['jobs_per_s']:,.0f} jobs/s",
                    f"mean batch **{backlog['mean_batch']:.1f}** = {backlog['mean_batch'] / batch_max:.2f} x "
                    f"MAX_BATCH_SIZE"),
                row("digits", "end to end, batching on", f"{on['jobs_per_s']:,.0f} jobs/s",
                    f"{fmt_latency(on)}; mean batch {on['mean_batch']:.1f}"),
                row("digits", "end to end, batching off (MAX_BATCH_SIZE=1)", f"{off['jobs_per_s']:,.0f} jobs/s",
                    f"on / off = **{on['jobs_per_s'] / off['jobs_per_s']:.2f}x**; {fmt_latency(off)}"),
            ]
            lines += front_door_rows(on, form, api_decodes, two_apis)
            if peer is not None:
                lines += [
                    row("digits", "Ray Serve 2.60, @serve.batch, same load", f"{peer['jobs_per_s']:,.0f} jobs/s",
                        f"service / Ray Serve = **{on['jobs_per_s'] / peer['jobs_per_s']:.2f}x**; "
                        f"{fmt_latency(peer)}; mean batch {peer['mean_batch']:.1f}"),
                ]
            lines += [
                row("digits", "light load, 10 jobs/s, submit to result", fmt_latency(light),
                    f"overhead beyond model time: p50 {light['p50'] * 1000 - model_ms:.1f} ms, "
                    f"p99 {light['p99'] * 1000 - model_ms:.1f} ms"),
            ]
            if peer is not None:
                lines += [row("digits", "Ray Serve, light load, 10 jobs/s", fmt_latency(peer["light"]),
                              f"overhead p50 {peer['light']['p50'] * 1000 - model_ms:.1f} ms")]
            if rasync is not None:
                lines += [
                    row("digits", "Ray Serve async inference, same load", f"{rasync['jobs_per_s']:,.0f} jobs/s",
                        f"service / Ray async = **{on['jobs_per_s'] / rasync['jobs_per_s']:.2f}x**; "
                        f"{fmt_latency(rasync)}; mean batch {rasync['mean_batch']:.1f}"),
                    row("digits", "Ray Serve async inference, light load, 10 jobs/s", fmt_latency(rasync["light"]),
                        f"overhead p50 {rasync['light']['p50'] * 1000 - model_ms:.1f} ms"),
                ]
            lines += [
                row("digits", "bare Celery no-op baseline", f"{noop['jobs_per_s']:,.0f} jobs/s",
                    f"end to end / no-op = **{on['jobs_per_s'] / noop['jobs_per_s']:.2f}x**"),
                row("digits", f"burst of {burst['jobs']:,} jobs", f"{burst['jobs_per_s']:,.0f} jobs/s",
                    f"succeeded {burst['succeeded']:,}, distinct ids {len(set(burst['ids'])):,}, "
                    f"model runs {burst['ran']:,} (duplicates: {burst['ran'] - len(set(burst['ids']))})"),
            ]
            lines += cost_rows(on, off, peer)
            if rasync is not None:
                lines.append(row("digits", "CPU ms per job, Ray Serve async", f"{rasync['cpu_ms']:.2f} "
                                 "(all its processes, Redis included)",
                                 f"service / Ray async = {on['service_cpu_ms'] / rasync['cpu_ms']:.2f}x"))

            if not args.skip_cnn:
                cnn_dir = cnn.write_model_dir(Path(tmp) / "cnn-models")
                c_ceiling = offline_ceiling(cnn_dir, cnn.NAME, batch_max, seconds=2.0)
                photos = photo_images(300 if args.quick else 1000, side=cnn.SIDE)
                c_on = bench.e2e(cnn_dir, cnn.NAME, photos, args.concurrency)
                c_off = bench.e2e(cnn_dir, cnn.NAME, photos[: len(photos) // 3], args.concurrency, max_batch_size=1)
                rates = c_ceiling["rates"]
                lines += [
                    row("cnn 64x64", f"offline, batch 1 vs batch {batch_max}",
                        f"{rates[1]:,.0f} vs {rates[batch_max]:,.0f} images/s",
                        f"time per image at batch {batch_max} = {rates[1] / rates[batch_max]:.2f} x batch 1"),
                    row("cnn 64x64", "end to end, batching on", f"{c_on['jobs_per_s']:,.0f} jobs/s",
                        f"{fmt_latency(c_on)}; mean batch {c_on['mean_batch']:.1f}"),
                    row("cnn 64x64", "end to end, batching off", f"{c_off['jobs_per_s']:,.0f} jobs/s",
                        f"on / off = **{c_on['jobs_per_s'] / c_off['jobs_per_s']:.2f}x**"),
                ]
            mobilenet: dict | None = None
            if not args.skip_mobilenet:
                mobilenet_dir = write_mobilenet(Path(tmp) / "mobilenet-models")
                # The worker alone on its core (taskset), as in any real deployment; the ceiling
                # measured on that core alone.
                m_ceiling = pinned_ceiling(mobilenet_dir, "mobilenet", batch_max, seconds=3.0)
                n = 128 if args.quick else 384
                photos = photo_images(n)
                # MAX_BATCH_SIZE tuned to the model, as an operator would: on this CPU a bigger
                # batch is slower per image than the best bucket (see the offline rates).
                best = m_ceiling["best_bucket"]
                m_api = bench.e2e(mobilenet_dir, "mobilenet", photos, args.concurrency, pin=True,
                                  api_settings={"decode_in_worker_max_bytes": 0}, max_batch_size=best)
                m_worker = bench.e2e(mobilenet_dir, "mobilenet", photos, args.concurrency, pin=True,
                                     max_batch_size=best)
                lines.append(row("mobilenet_v2 224", f"offline ceiling on the worker's core (bucket "
                                 f"{m_ceiling['best_bucket']})", f"{m_ceiling['images_per_s']:,.1f} images/s",
                                 f"batch-1 {m_ceiling['batch1_s'] * 1000:.0f} ms"))
                for label, m_on in (("the API decodes", m_api), ("the worker decodes", m_worker)):
                    others = sum(ms for name, ms in m_on["cpu_ms"].items() if name != "inference worker")
                    lines.append(row(
                        "mobilenet_v2 224", f"end to end, worker pinned, {label}", f"{m_on['jobs_per_s']:,.1f} jobs/s",
                        f"e2e / ceiling = **{m_on['jobs_per_s'] / m_ceiling['images_per_s']:.2f}x**; "
                        f"{fmt_latency(m_on)}; mean batch {m_on['mean_batch']:.1f}; CPU ms per job: worker "
                        f"{m_on['cpu_ms']['inference worker']:.1f}, everything else {others:.1f} (API "
                        f"{m_on['cpu_ms']['API']:.1f})"))
                mobilenet = {"ratio": m_api["jobs_per_s"] / m_ceiling["images_per_s"]}
            lines += ["", *target_rows(on, backlog["mean_batch"] / batch_max, burst, light["p50"] * 1000 - model_ms,
                                       peer, rasync, mobilenet)]
        finally:
            bench.close()
    print("\n".join(lines))


def front_door_rows(on: dict, form: dict, api_decodes: dict, two_apis: dict) -> list[str]:
    """What the API costs per job, by how it is reached and where images are decoded."""
    def api(r: dict) -> str:
        return f"API {r['cpu_ms']['API']:.2f} CPU ms per job (service {r['service_cpu_ms']:.2f})"

    return [
        row("digits", "front door: raw body, the worker decodes (as the client sends)", f"{on['jobs_per_s']:,.0f} "
            "jobs/s", f"**{api(on)}**; p50 {on['p50'] * 1000:.0f} ms"),
        row("digits", "front door: multipart form, same load", f"{form['jobs_per_s']:,.0f} jobs/s",
            f"{api(form)}; p50 {form['p50'] * 1000:.0f} ms"),
        row("digits", "front door: raw body, the API decodes (DECODE_IN_WORKER_MAX_BYTES=0)",
            f"{api_decodes['jobs_per_s']:,.0f} jobs/s",
            f"{api(api_decodes)}; inference worker {api_decodes['cpu_ms']['inference worker']:.2f} (decoding "
            f"there: {on['cpu_ms']['inference worker']:.2f})"),
        row("digits", "front door: API_WORKERS=2, raw body", f"{two_apis['jobs_per_s']:,.0f} jobs/s",
            f"{api(two_apis)} (1 process: {on['cpu_ms']['API']:.2f}); x{two_apis['jobs_per_s'] / on['jobs_per_s']:.2f} "
            "jobs/s on these 2 shared cores"),
    ]


def target_rows(on: dict, backlog_ratio: float, burst: dict, overhead_ms: float, peer: dict | None,
                rasync: dict | None, mobilenet: dict | None) -> list[str]:
    """Each target of the front door's issue (#21) against this run's figure."""
    def check(name: str, value: float, target: float, text: str, at_least: bool = True) -> str:
        met = value >= target if at_least else value <= target
        return f"| {name} | {text} | {'≥' if at_least else '≤'} {target:g} | {'met' if met else 'missed'} |"

    rows = ["| target | this run | wanted | |", "|---|---|---|---|",
            check("API CPU ms per digits job", on["cpu_ms"]["API"], 1.5, f"{on['cpu_ms']['API']:.2f}", False),
            check("service CPU ms per job", on["service_cpu_ms"], 3.5, f"{on['service_cpu_ms']:.2f}", False),
            check("Redis commands per job", on["redis_commands"], 15, f"{on['redis_commands']:.1f}", False),
            check("light-load p50 overhead, ms", overhead_ms, 8, f"{overhead_ms:.1f}", False),
            check("mean batch under backlog / MAX_BATCH_SIZE", backlog_ratio, 0.8, f"{backlog_ratio:.2f}")]
    if peer is not None:
        ratio = on["jobs_per_s"] / peer["jobs_per_s"]
        rows.append(check("jobs/s vs Ray Serve @serve.batch", ratio, 2.0, f"{ratio:.2f}x"))
    if rasync is not None:
        ratio = on["jobs_per_s"] / rasync["jobs_per_s"]
        rows.append(check("jobs/s vs Ray Serve async inference", ratio, 1.5, f"{ratio:.2f}x"))
    if mobilenet is not None:
        rows.append(check("MobileNetV2 e2e / ceiling, worker pinned", mobilenet["ratio"], 0.9,
                          f"{mobilenet['ratio']:.2f}x"))
    lost = burst["jobs"] - burst["succeeded"]
    twice = burst["ran"] - len(set(burst["ids"]))
    rows.append(f"| burst: lost, run twice | {lost}, {twice} | 0, 0 | {'met' if lost == twice == 0 else 'missed'} |")
    return rows


def cost_rows(on: dict, off: dict, peer: dict | None) -> list[str]:
    """CPU milliseconds per digits job, per process (from /proc), and Redis's share."""
    def split(r: dict) -> str:
        return ", ".join(f"{name} {ms:.2f}" for name, ms in r["cpu_ms"].items() if name != "load generator") + (
            f"; load generator {r['cpu_ms']['load generator']:.2f}")

    lines = [
        row("digits", "CPU ms per job, batching on", f"**{on['service_cpu_ms']:.2f}** (service)", split(on)),
        row("digits", "CPU ms per job, batching off", f"{off['service_cpu_ms']:.2f} (service)", split(off)),
    ]
    if peer is not None:
        lines.append(row("digits", "CPU ms per job, Ray Serve", f"{peer['cpu_ms']:.2f} (all its processes)",
                         f"service / Ray Serve = {on['service_cpu_ms'] / peer['cpu_ms']:.2f}x"))
    lines.append(row("digits", "Redis per job, batching on", f"{on['redis_commands']:.1f} commands, "
                     f"{on['cpu_ms']['redis']:.3f} CPU ms",
                     f"one Redis core serves at most **~{on['redis_ceiling']:,.0f} jobs/s** (a script counts with the "
                     f"commands it runs; Redis runs them on one thread)"))
    return lines


if __name__ == "__main__":
    main()

"""Ray Serve's own asynchronous inference as a peer: an ingress enqueues, a `@task_consumer` runs.

Ray Serve 2.60's durable "Asynchronous Inference" (alpha: `ray.serve.task_consumer`,
`ray.serve.task_processor.CeleryTaskProcessorAdapter`), serving the service's model the way
its docs wire it:

- a real redis-server (`devstack.processes.RedisServer`, the same AOF configuration as the
  service's) is the adapter's Celery broker *and* result backend;
- an HTTP ingress deployment (`Ingress`) decodes the upload (`pixels_of`, as the API does),
  and enqueues one task per job through the adapter (`enqueue_task_sync`, args: the pixels
  as `shared.codec.encode_pixels` base64, as the service queues them), with the dead-letter
  queues the docs configure (`failed_task_queue_name`, `unprocessable_task_queue_name`) and
  the adapter's default retries (3);
- a `@task_consumer` deployment (`Consumer`, one replica with the machine's cores, as the
  service's single worker) whose `@task_handler` runs the model; the adapter starts a Celery
  worker in a thread of that replica (pool "threads", concurrency = the deployment's
  `max_ongoing_requests`, acks late) and the handler's return value is stored in the Redis
  result backend.

Batching: the API has none of its own. Task handlers must be synchronous (the Celery adapter
refuses coroutines, so `@serve.batch`, which is async, cannot wrap one) and Celery hands each
thread one task. The consumer therefore batches itself, as `@serve.batch` would: each
handler thread decodes its task's pixels and hands them to one model thread, which takes
what is waiting, up to `max_batch_size` rows, waiting at most `wait_s` for more once it has
one, then runs `scale` on the stack and the worker's `LoadedModel` (one traced function per
bucket) and answers each thread its row's `to_prediction`. `max_batch_size=1` is one task,
one model call. `GET /stats` counts the model's batches and items (and the ingress's status
polls).

What the client does: `POST /jobs` (also `/predict`) with a multipart `file` (and `model`,
ignored), exactly what `benchmarks.load.closed_loop` sends. The ingress enqueues the task,
then polls the task's status itself on the client's behalf (`get_task_status_sync`, the
adapter's documented call, first after 2 ms, then backing off x1.5 up to every 50 ms), the
way the service answers `Prefer: wait`, and answers the finished job,
`{"id", "status": "succeeded", "result": {"label", "score", ...}}` (FAILURE or REVOKED:
`"status": "failed"` with the error). Past `WAIT_S` (60 s) it answers the queued job
(`"status": "queued"`) and `GET /jobs/{id}` polls likewise, so `closed_loop` drives it
unchanged. The Ray docs' own client polls `GET /status/{id}` over HTTP instead; polling in
the ingress saves this peer those round trips. The adapter is synchronous (Celery); the
ingress makes its calls (local Redis round trips) on its event loop, which cost less CPU here
than a hop to a thread pool each (`--adapter-threads`, measured slower on this machine).

Where the CPU goes (digits, 64 clients, 2 shared cores; `--smoke` prints the split): the
ingress replica about 7 ms per job (the adapter's `enqueue_task_sync`, which is Celery's
`send_task` and then two reads of the new task's status, and `get_task_status_sync` are
about a quarter of its samples under py-spy; `pixels_of` a tenth), Ray's HTTP proxy about
5 ms, the consumer replica about 4 ms, Redis under 1 ms. The ingress, not the model, sets
the pace: the consumer finds about one task waiting at a time (mean batch ~1.3), and the
task is done by the first status poll (2 ms after it was queued).

Ray runs in a child process (`python -m benchmarks.peers.ray_async --ray-dir ...`), a fresh
local cluster in a private temp folder, offline (no dashboard, no usage stats). `Peer.pids()`
is that child and all its descendants (every Ray process, the replicas' Celery threads
included) plus the redis-server, so `Peer.cpu_seconds()` accounts for all of the peer's CPU,
Redis included.

    peer = start(Path("models"), "digits", port=8701)
    closed_loop(peer.url, images, "digits", 64, key="")   # key is sent, and ignored
    peer.stats()   # {"batches": ..., "items": ...}
    peer.close()

Alone (a smoke run: the digits model, 64 clients, about 20 s):

    .venv/bin/python -m benchmarks.peers.ray_async --smoke [--seconds 20] [--concurrency 64]
"""

import argparse
import asyncio
import concurrent.futures
import functools
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

try:
    import ray
    from ray import serve
    from ray.serve.schema import CeleryAdapterConfig, LoggingConfig, TaskProcessorConfig
    from ray.serve.task_consumer import instantiate_adapter_from_config, task_consumer, task_handler
except ImportError as exc:  # the optional extra
    raise ImportError("Ray Serve is not installed: pip install -c constraints.txt -e '.[peers]'") from exc
from starlette.requests import Request
from starlette.responses import JSONResponse

from benchmarks.peers import ray_serve
from benchmarks.peers.ray_serve import _cpu_seconds, launch, tree_of
from devstack.processes import RedisServer
from shared.codec import encode_pixels
from shared.preprocessing import ImageTooLarge, InvalidImage, pixels_of, scale
from shared.registry import Registry

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_BATCH_SIZE = 32
BATCH_WAIT_S = 0.002
CONSUMER_CONCURRENCY = 64  # Celery threads in the consumer replica (its max_ongoing_requests)
QUEUE = "ray_async_infer"
TASK = "classify"
POLL_FIRST_S, POLL_MAX_S, POLL_BACKOFF = 0.002, 0.05, 1.5
WAIT_S = 60.0
DONE = {"SUCCESS": "succeeded", "FAILURE": "failed", "REVOKED": "failed"}


def processor_config(redis_url: str) -> TaskProcessorConfig:
    """The adapter's configuration, as the Ray docs give it: Celery on Redis, dead-letter queues."""
    return TaskProcessorConfig(
        queue_name=QUEUE,
        adapter_config=CeleryAdapterConfig(broker_url=redis_url, backend_url=redis_url),
        max_retries=3,
        failed_task_queue_name=f"{QUEUE}_failed",
        unprocessable_task_queue_name=f"{QUEUE}_unprocessable",
    )


class _Batcher:
    """One model thread fed by the consumer's Celery threads: `@serve.batch`'s policy
    (run what is waiting, up to `max_batch_size`; wait at most `wait_s` for more)."""

    def __init__(self, model_dir: str, model: str, max_batch_size: int, wait_s: float):
        from worker.inference.model import LoadedModel, configure_devices

        configure_devices()
        self.manifest = Registry(Path(model_dir), model).resolve(None)
        self.model = LoadedModel(self.manifest, max_batch_size)
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self.batches = 0
        self.items = 0
        self._waiting: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name="model", daemon=True).start()

    def classify(self, payload: str) -> dict:
        """One task's pixels (base64) -> its prediction; blocks the calling (Celery) thread."""
        rows = self.model.decode(payload)
        done: concurrent.futures.Future = concurrent.futures.Future()
        self._waiting.put((rows, done))
        return done.result()

    def _run(self) -> None:
        from worker.inference.batch import to_prediction

        while True:
            taken = [self._waiting.get()]
            deadline = time.monotonic() + self.wait_s
            while len(taken) < self.max_batch_size:
                try:
                    taken.append(self._waiting.get_nowait())
                except queue.Empty:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        taken.append(self._waiting.get(timeout=left))
                    except queue.Empty:
                        break
            try:
                batch = scale(np.stack([rows for rows, _ in taken]), self.manifest.preprocessing)
                probabilities = self.model.predict(batch)
                manifest = self.manifest
                answers = [to_prediction(row, manifest.labels, manifest.calibration).model_dump()
                           for row in probabilities]
            except Exception as exc:  # each waiting task fails with it (and Celery retries it)
                for _, done in taken:
                    done.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(taken)
            for (_, done), answer in zip(taken, answers, strict=True):
                done.set_result(answer)


def consumer_deployment(redis_url: str, cores: int, concurrency: int):
    """The `@task_consumer` deployment; a factory, since its decorator takes the broker URL."""

    @serve.deployment(name="consumer", num_replicas=1, max_ongoing_requests=concurrency,
                      ray_actor_options={"num_cpus": cores})
    @task_consumer(task_processor_config=processor_config(redis_url))
    class Consumer:
        def __init__(self, model_dir: str, model: str, max_batch_size: int, wait_s: float):
            self.batcher = _Batcher(model_dir, model, max_batch_size, wait_s)

        @task_handler(name=TASK)
        def classify(self, payload: str) -> dict:
            return self.batcher.classify(payload)

        def stats(self) -> dict:
            return {"batches": self.batcher.batches, "items": self.batcher.items, "pid": os.getpid()}

    return Consumer


@serve.deployment(name="ingress", num_replicas=1)
class Ingress:
    def __init__(self, consumer, redis_url: str, model_dir: str, model: str, max_pixels: int,
                 adapter_threads: bool = False, poll: tuple[float, float] = (POLL_FIRST_S, POLL_MAX_S)):
        self.adapter_threads = adapter_threads
        self.poll_first_s, self.poll_max_s = poll
        self.polls = 0
        self.consumer = consumer  # a handle: for /stats only; tasks go through Redis
        self.adapter = instantiate_adapter_from_config(processor_config(redis_url))
        self.manifest = Registry(Path(model_dir), model).resolve(None)
        self.max_pixels = max_pixels
        # The adapter is synchronous (Celery). Its calls are local Redis round trips (an LPUSH,
        # a GET), made on the event loop: cheaper here than a hop to a thread (adapter_threads:
        # a pool with a thread for every client at once; asyncio's default has cores + 4).
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=256, thread_name_prefix="adapter")

    async def _call(self, fn, *args, **kwargs):
        if not self.adapter_threads:
            return fn(*args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(fn, *args, **kwargs))

    async def _answer(self, task_id: str, wait_s: float) -> JSONResponse:
        """Polls the task's status (the adapter's get_task_status_sync) until it is done or
        `wait_s` has passed; answers the job as the service would."""
        deadline = time.monotonic() + wait_s
        delay = self.poll_first_s
        while True:
            self.polls += 1
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            task = await self._call(self.adapter.get_task_status_sync, task_id)
            status = DONE.get(task.status)
            if status == "succeeded":
                return JSONResponse({"id": task_id, "status": status,
                                     "model": {"name": self.manifest.name, "version": self.manifest.version},
                                     "result": task.result})
            if status is not None:
                return JSONResponse({"id": task_id, "status": status, "error": str(task.result)})
            if time.monotonic() >= deadline:
                return JSONResponse({"id": task_id, "status": "queued", "celery_status": task.status},
                                    status_code=202)
            delay = min(self.poll_max_s, delay * POLL_BACKOFF)

    async def __call__(self, request: Request) -> JSONResponse:
        path = request.url.path.rstrip("/")
        if request.method == "GET" and path.endswith("/stats"):
            return JSONResponse({**await self.consumer.stats.remote(), "polls": self.polls})
        if request.method == "GET" and "/jobs/" in path:
            wait = float(request.query_params.get("wait", "0") or 0)
            return await self._answer(path.rsplit("/", 1)[1], min(wait, WAIT_S))
        if request.method != "POST" or not path.endswith(("/jobs", "/predict")):
            return JSONResponse({"detail": "not found"}, status_code=404)
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            return JSONResponse({"detail": "a multipart `file` is required"}, status_code=422)
        data = await upload.read()
        try:
            pixels = pixels_of(data, self.manifest, self.max_pixels)
        except (InvalidImage, ImageTooLarge) as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        task = await self._call(self.adapter.enqueue_task_sync, TASK, args=[encode_pixels(pixels)])
        return await self._answer(task.id, WAIT_S)


class Peer(ray_serve.Peer):
    """A running Ray Serve async-inference peer: its own process tree and its redis-server.
    `url` is the base the load generator takes (it posts to `url + "/jobs"`)."""

    def __init__(self, process: subprocess.Popen, port: int, workdir: Path, redis: RedisServer):
        super().__init__(process, port, workdir)
        self.redis = redis

    def pids(self) -> list[int]:
        """The launcher, every Ray process under it and the redis-server (and any child), now."""
        return tree_of([self.process.pid, *([self.redis.proc.pid] if self.redis.proc else [])])

    def cpu_by_process(self) -> dict[str, float]:
        """User + system CPU seconds of `pids()` by process name (Ray names its workers
        `ray::ServeReplica:peer:consumer` and so on), now."""
        by: dict[str, float] = {}
        for pid in self.pids():
            try:
                name = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            name = name if name.startswith("ray::") else Path(name.split()[0] if name else "?").name
            by[name] = by.get(name, 0.0) + _cpu_seconds(pid)
        return by

    def close(self, timeout: float = 30) -> None:
        super().close(timeout)  # the Ray tree; then its Redis
        self.redis.stop()


def start(model_dir: Path, model: str, port: int, max_batch_size: int = MAX_BATCH_SIZE,
          wait_s: float = BATCH_WAIT_S, concurrency: int = CONSUMER_CONCURRENCY, adapter_threads: bool = False,
          poll: tuple[float, float] = (POLL_FIRST_S, POLL_MAX_S), timeout: float = 180) -> Peer:
    """Redis, then Ray Serve's async inference serving `model` from `model_dir` on
    127.0.0.1:`port`; returns once the ingress answers and the consumer is up."""
    workdir = Path(tempfile.mkdtemp(prefix="ray-async-peer-"))
    (workdir / "redis").mkdir()
    redis = RedisServer(workdir / "redis")
    redis.start()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "RAY_USAGE_STATS_ENABLED": "0",
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    }
    command = [sys.executable, "-m", "benchmarks.peers.ray_async", "--model-dir", str(Path(model_dir).resolve()),
               "--model", model, "--port", str(port), "--max-batch-size", str(max_batch_size),
               "--wait-s", str(wait_s), "--concurrency", str(concurrency), "--redis-url", redis.url,
               "--ray-dir", str(workdir / "ray"), "--poll-first-s", str(poll[0]), "--poll-max-s", str(poll[1]),
               *(["--adapter-threads"] if adapter_threads else [])]
    return launch(command, env, workdir, lambda process: Peer(process, port, workdir, redis), "Ray Serve async peer",
                  timeout)


def serve_forever(args: argparse.Namespace) -> None:
    from shared.settings import Settings

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    cores = os.cpu_count() or 1
    began = time.perf_counter()
    ray.init(address="local", num_cpus=cores + 1, include_dashboard=False, _temp_dir=args.ray_dir,
             _node_ip_address="127.0.0.1", log_to_driver=False, logging_level="WARNING")
    print(f"ray up in {time.perf_counter() - began:.1f}s", flush=True)
    quiet = LoggingConfig(log_level="WARNING", enable_access_log=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port}, logging_config=quiet)
        consumer = consumer_deployment(args.redis_url, cores, args.concurrency).bind(
            args.model_dir, args.model, args.max_batch_size, args.wait_s)
        app = Ingress.options(
            # The ingress is I/O (and decoding); the consumer replica holds the cores.
            ray_actor_options={"num_cpus": 1},
            max_ongoing_requests=max(256, 4 * args.concurrency),
        ).bind(consumer, args.redis_url, args.model_dir, args.model, Settings().max_image_pixels,
               args.adapter_threads, (args.poll_first_s, args.poll_max_s))
        serve.run(app, name="peer", route_prefix="/", logging_config=quiet)
        print(f"serving on 127.0.0.1:{args.port} after {time.perf_counter() - began:.1f}s", flush=True)
        while not stopping:
            time.sleep(0.2)
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def smoke(args: argparse.Namespace) -> None:
    """The peer alone: the digits model, `--concurrency` clients for about `--seconds`."""
    from benchmarks.load import closed_loop, open_loop
    from benchmarks.run import REPO_MODELS, digit_images
    from devstack.processes import free_port

    images = digit_images(4000)
    with start(REPO_MODELS, "digits", port=free_port(), max_batch_size=args.max_batch_size,
               wait_s=args.wait_s, concurrency=args.concurrency, adapter_threads=args.adapter_threads,
               poll=(args.poll_first_s, args.poll_max_s)) as peer:
        print(f"up in {peer.start_seconds:.1f}s", flush=True)
        warm = closed_loop(peer.url, images[:200], "digits", args.concurrency, "")
        n = max(200, min(len(images), int(warm["jobs_per_s"] * args.seconds)))
        stats, cpu, split = peer.stats(), peer.cpu_seconds(), peer.cpu_by_process()
        result = closed_loop(peer.url, images[:n], "digits", args.concurrency, "")
        after = peer.stats()
        cpu_ms = 1000 * (peer.cpu_seconds() - cpu) / n
        split_after = peer.cpu_by_process()
        shares = {name: 1000 * (seconds - split.get(name, 0.0)) / n for name, seconds in split_after.items()}
        mean = (after["items"] - stats["items"]) / max(1, after["batches"] - stats["batches"])
        polls = (after["polls"] - stats["polls"]) / n
        print(f"{n} jobs, {args.concurrency} clients: {result['jobs_per_s']:.0f} jobs/s, succeeded "
              f"{result['succeeded']}, p50 {result['p50'] * 1000:.1f} ms, p95 {result['p95'] * 1000:.1f} ms, "
              f"p99 {result['p99'] * 1000:.1f} ms; mean batch {mean:.1f}; status polls per job {polls:.1f}; "
              f"CPU ms per job {cpu_ms:.2f} (all {len(peer.pids())} processes, Redis included)", flush=True)
        print("CPU ms per job by process: " + ", ".join(
            f"{name} {ms:.2f}" for name, ms in sorted(shares.items(), key=lambda item: -item[1]) if ms >= 0.01))
        if args.light:
            open_loop(peer.url, images[:10], "digits", 10, "")
            light = open_loop(peer.url, images[:100], "digits", 10, "")
            print(f"light load, 10 jobs/s: p50 {light['p50'] * 1000:.1f} ms, p95 {light['p95'] * 1000:.1f} ms, "
                  f"p99 {light['p99'] * 1000:.1f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Ray Serve async-inference peer (started by "
                                     "benchmarks.peers.ray_async.start; --smoke runs it alone)")
    parser.add_argument("--smoke", action="store_true", help="start the peer and drive it (digits)")
    parser.add_argument("--seconds", type=float, default=20.0, help="--smoke: about how long the measured run")
    parser.add_argument("--light", action="store_true", help="--smoke: and light load (10 jobs/s, 10 s)")
    parser.add_argument("--model-dir")
    parser.add_argument("--model")
    parser.add_argument("--port", type=int)
    parser.add_argument("--max-batch-size", type=int, default=MAX_BATCH_SIZE)
    parser.add_argument("--wait-s", type=float, default=BATCH_WAIT_S)
    parser.add_argument("--concurrency", type=int, default=CONSUMER_CONCURRENCY,
                        help="consumer threads; --smoke: clients")
    parser.add_argument("--adapter-threads", action="store_true",
                        help="the adapter's calls in a thread pool, not on the ingress's event loop")
    parser.add_argument("--poll-first-s", type=float, default=POLL_FIRST_S)
    parser.add_argument("--poll-max-s", type=float, default=POLL_MAX_S)
    parser.add_argument("--redis-url")
    parser.add_argument("--ray-dir")
    args = parser.parse_args()
    if args.smoke:
        smoke(args)
        return
    if not all([args.model_dir, args.model, args.port, args.redis_url, args.ray_dir]):
        parser.error("--model-dir, --model, --port, --redis-url and --ray-dir are required (or --smoke)")
    serve_forever(args)


if __name__ == "__main__":
    # Through the module's real name, so Ray pickles Ingress by reference, not by value.
    from benchmarks.peers import ray_async

    ray_async.main()

"""Ray Serve as a peer: the service's model behind `@serve.batch` instead of a queue.

The same model folder, the same preprocessing (`pixels_of` per upload, as the API does;
`scale` on the stacked batch, as the worker does), the same TensorFlow call (the worker's
`LoadedModel`, one traced function per bucket) and the same result (`to_prediction`). The
HTTP surface is the slice of the service's that the load generator uses: `POST /jobs` (also
`/predict`) with a multipart `file` (and `model`, ignored) answers the finished job at once,
`{"id", "status": "succeeded", "result": {"label", "score", ...}}`, so `benchmarks.load.closed_loop`
drives it unchanged. `GET /stats` counts the batches and items the model ran.

Ray runs in a child process of its own (`python -m benchmarks.peers.ray_serve`), a fresh
local cluster in a private temp folder: offline (no dashboard, no usage stats), and every Ray
process (GCS, raylet, agents, controller, proxy, replica) is that child or a descendant of it,
so `Peer.pids()` / `Peer.cpu_seconds()` account for all of Ray's CPU.

    peer = start(Path("models"), "digits", port=8700)
    closed_loop(peer.url, images, "digits", 64, key="")   # key is sent, and ignored
    peer.stats()   # {"batches": ..., "items": ...}
    peer.close()
"""

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

try:
    import ray
    from ray import serve
    from ray.serve.schema import LoggingConfig
except ImportError as exc:  # the optional extra
    raise ImportError("Ray Serve is not installed: pip install -c constraints.txt -e '.[peers]'") from exc
from starlette.requests import Request
from starlette.responses import JSONResponse

from shared.preprocessing import ImageTooLarge, InvalidImage, pixels_of, scale
from shared.registry import Registry

REPO_ROOT = Path(__file__).resolve().parents[2]
P = TypeVar("P", bound="Peer")
MAX_BATCH_SIZE = 32
BATCH_WAIT_S = 0.002


@serve.deployment(name="classifier", num_replicas=1)
class Classifier:
    def __init__(self, model_dir: str, model: str, max_batch_size: int, wait_s: float, max_pixels: int):
        from worker.inference.model import LoadedModel, configure_devices

        configure_devices()
        self.manifest = Registry(Path(model_dir), model).resolve(None)
        self.model = LoadedModel(self.manifest, max_batch_size)
        self.max_pixels = max_pixels
        self.infer.set_max_batch_size(max_batch_size)
        self.infer.set_batch_wait_timeout_s(wait_s)
        self.batches = 0
        self.items = 0

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_S)
    async def infer(self, pixels: list[np.ndarray]) -> list[dict]:
        from worker.inference.batch import to_prediction

        self.batches += 1
        self.items += len(pixels)
        batch = scale(np.stack(pixels), self.manifest.preprocessing)
        # Off the event loop, as the worker's model thread: uploads keep arriving (and being
        # decoded) while a batch runs, so the next one fills meanwhile.
        probabilities = await asyncio.to_thread(self.model.predict, batch)
        manifest = self.manifest
        return [to_prediction(row, manifest.labels, manifest.calibration).model_dump() for row in probabilities]

    async def __call__(self, request: Request) -> JSONResponse:
        path = request.url.path.rstrip("/")
        if request.method == "GET" and path.endswith("/stats"):
            return JSONResponse({"batches": self.batches, "items": self.items, "pid": os.getpid()})
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
        result = await self.infer(pixels)
        return JSONResponse({"id": uuid.uuid4().hex, "status": "succeeded",
                             "model": {"name": self.manifest.name, "version": self.manifest.version},
                             "result": result})


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # gone
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def tree_of(roots: list[int]) -> list[int]:
    """These processes and every descendant, now."""
    tree, found, todo = _children(), [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


class Peer:
    """A running Ray Serve peer (its own process tree). `url` is the base the load generator
    takes (it posts to `url + "/jobs"`)."""

    def __init__(self, process: subprocess.Popen, port: int, workdir: Path):
        self.process = process
        self.port = port
        self.workdir = workdir
        self.url = f"http://127.0.0.1:{port}"
        self.predict_url = f"{self.url}/predict"
        self.stats_url = f"{self.url}/stats"
        self.start_seconds = 0.0

    def stats(self) -> dict:
        """Batches and items the model has run since start: mean batch = Δitems / Δbatches."""
        with urllib.request.urlopen(self.stats_url, timeout=10) as response:
            return json.loads(response.read())

    def pids(self) -> list[int]:
        """The launcher process and every Ray process under it, now."""
        return tree_of([self.process.pid])

    def cpu_seconds(self) -> float:
        """User + system CPU of `pids()`, now (take a difference around a run)."""
        return sum(_cpu_seconds(pid) for pid in self.pids())

    def log_tail(self, chars: int = 4000) -> str:
        log = self.workdir / "launcher.log"
        return log.read_text(errors="replace")[-chars:] if log.exists() else ""

    def close(self, timeout: float = 30) -> None:
        pids = tree_of([self.process.pid])
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        for pid in pids:  # whatever outlived ray.shutdown(): this tree only, by id
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Peer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start(model_dir: Path, model: str, port: int, max_batch_size: int = MAX_BATCH_SIZE,
          wait_s: float = BATCH_WAIT_S, timeout: float = 180) -> Peer:
    """Ray Serve serving `model` from `model_dir` on 127.0.0.1:`port`; returns once it answers."""
    workdir = Path(tempfile.mkdtemp(prefix="ray-peer-"))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "RAY_USAGE_STATS_ENABLED": "0",
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    }
    command = [sys.executable, "-m", "benchmarks.peers.ray_serve", "--model-dir", str(Path(model_dir).resolve()),
               "--model", model, "--port", str(port), "--max-batch-size", str(max_batch_size),
               "--wait-s", str(wait_s), "--ray-dir", str(workdir / "ray")]
    return launch(command, env, workdir, lambda process: Peer(process, port, workdir), "Ray Serve peer", timeout)


def launch(command: list[str], env: dict[str, str], workdir: Path, make_peer: Callable[[subprocess.Popen], P],
           name: str, timeout: float) -> P:
    """Start the peer's launcher process and wait until its /stats answers (RuntimeError
    with its log's tail when it exits or is not up within `timeout`)."""
    started = time.perf_counter()
    with open(workdir / "launcher.log", "wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    peer = make_peer(process)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            tail = peer.log_tail()
            peer.close()
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")
        try:
            peer.stats()
            break
        except (OSError, urllib.error.URLError, ValueError):
            if time.monotonic() > deadline:
                tail = peer.log_tail()
                peer.close()
                raise RuntimeError(f"{name} not up after {timeout:.0f}s:\n{tail}") from None
            time.sleep(0.25)
    peer.start_seconds = time.perf_counter() - started
    return peer


def serve_forever(args: argparse.Namespace) -> None:
    from shared.settings import Settings

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    cores = os.cpu_count() or 1
    began = time.perf_counter()
    ray.init(address="local", num_cpus=cores, include_dashboard=False, _temp_dir=args.ray_dir,
             _node_ip_address="127.0.0.1", log_to_driver=False, logging_level="WARNING")
    print(f"ray up in {time.perf_counter() - began:.1f}s", flush=True)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port},
                    logging_config=LoggingConfig(log_level="WARNING", enable_access_log=False))
        app = Classifier.options(
            # The replica gets the machine's cores, as the service's single worker does.
            ray_actor_options={"num_cpus": cores},
            # Room for a batch running and the next one filling (Ray's default is 5).
            max_ongoing_requests=max(64, 4 * args.max_batch_size),
        ).bind(args.model_dir, args.model, args.max_batch_size, args.wait_s, Settings().max_image_pixels)
        serve.run(app, name="peer", route_prefix="/",
                  logging_config=LoggingConfig(log_level="WARNING", enable_access_log=False))
        print(f"serving on 127.0.0.1:{args.port} after {time.perf_counter() - began:.1f}s", flush=True)
        while not stopping:
            time.sleep(0.2)
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description="Ray Serve peer (started by benchmarks.peers.ray_serve.start)")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-batch-size", type=int, default=MAX_BATCH_SIZE)
    parser.add_argument("--wait-s", type=float, default=BATCH_WAIT_S)
    parser.add_argument("--ray-dir", required=True)
    serve_forever(parser.parse_args())


if __name__ == "__main__":
    # Through the module's real name, so Ray pickles Classifier by reference, not by value.
    from benchmarks.peers import ray_serve

    ray_serve.main()

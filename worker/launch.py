"""Container entrypoint for inference workers: one Celery process per visible GPU, each
pinned with CUDA_VISIBLE_DEVICES and its own metrics port; one CPU process when there is
no GPU. Forwards SIGTERM/SIGINT (each worker re-queues what it holds) and exits when any
child exits, so the orchestrator restarts the pod instead of running it half-staffed.

    python -m worker.launch [extra celery worker arguments]
"""

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence


def visible_gpus(environ: dict[str, str]) -> list[str]:
    """GPU ids this container may use, without importing TensorFlow (the parent never does)."""
    declared = environ.get("CUDA_VISIBLE_DEVICES", environ.get("NVIDIA_VISIBLE_DEVICES", ""))
    if declared in ("", "none", "void", "-1"):
        return []
    if declared != "all":
        return [d.strip() for d in declared.split(",") if d.strip()]
    if not shutil.which("nvidia-smi"):
        return []
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
    return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


# The Celery command lines, written once: this entrypoint and devstack (make run, the tests,
# the benchmarks) start every worker and Flower from these. Only the standard library is
# imported here, so devstack can import them without TensorFlow or any side effect.

def celery_argv(app: str, *args: str) -> list[str]:
    """`celery -A app ...` of this interpreter (the image's or the .venv's Celery)."""
    return [sys.executable, "-m", "celery", "-A", app, *args]


def worker_argv(node: str, app: str = "worker.inference.app", loglevel: str = "INFO",
                extra: Sequence[str] = ()) -> list[str]:
    """A Celery worker of `app` named node@%h. No mingle or gossip: jobs are cancelled in the
    job store, not by Celery revokes, so there is nothing to sync with other workers (mingle
    waits 1 s for them at every start)."""
    return celery_argv(app, "worker", "-n", f"{node}@%h", "--loglevel", loglevel, "--without-mingle",
                       "--without-gossip", *extra)


def plan(environ: dict[str, str], extra: list[str]) -> list[tuple[list[str], dict[str, str]]]:
    """(argv, environment) of each worker process to start."""
    base_port = int(environ.get("WORKER_METRICS_PORT", "9100"))
    loglevel = environ.get("LOG_LEVEL", "INFO")
    gpus = visible_gpus(environ)
    if not gpus:
        return [(worker_argv("cpu", loglevel=loglevel, extra=extra), {**environ, "CUDA_VISIBLE_DEVICES": "-1"})]
    return [
        (worker_argv(f"gpu{gpu}", loglevel=loglevel, extra=extra),
         {**environ, "CUDA_VISIBLE_DEVICES": gpu, "WORKER_METRICS_PORT": str(base_port + i)})
        for i, gpu in enumerate(gpus)
    ]


def main() -> int:
    children = [subprocess.Popen(argv, env=env) for argv, env in plan(dict(os.environ), sys.argv[1:])]

    def forward(signum, _frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    _, status = os.wait()
    forward(signal.SIGTERM, None)
    for child in children:
        child.wait()
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())

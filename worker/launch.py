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


def plan(environ: dict[str, str], extra: list[str]) -> list[tuple[list[str], dict[str, str]]]:
    """(argv, environment) of each worker process to start."""
    base_port = int(environ.get("WORKER_METRICS_PORT", "9100"))
    # No mingle or gossip: jobs are cancelled in the job store, not by Celery revokes, so
    # there is nothing to sync with other workers (mingle waits 1 s for them at every start).
    celery = [sys.executable, "-m", "celery", "-A", "worker.inference.app", "worker", "--loglevel",
              environ.get("LOG_LEVEL", "INFO"), "--without-mingle", "--without-gossip"]
    gpus = visible_gpus(environ)
    if not gpus:
        return [([*celery, "-n", "cpu@%h", *extra], {**environ, "CUDA_VISIBLE_DEVICES": "-1"})]
    return [
        ([*celery, "-n", f"gpu{gpu}@%h", *extra],
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

"""The training worker's staging folders: MODEL_DIR/.training/<job id>/<version>/, where a
version is written whole before it is renamed into place (worker.training.trainer.write).

A run removes its own (try/finally), but a run that is killed (SIGKILL, the node lost, the
out-of-memory killer) cannot: its half-written folder would stay on the model volume
forever, one per kill. So at every start the training worker sweeps: a folder whose job is
not running now (ended, expired, gone, or never recorded) is removed; a running job's is
left to its run (which clears it before it writes again, when its message is redelivered).
"""

import logging
import shutil
from pathlib import Path

from shared.jobstore import JobStore
from shared.schemas import JobStatus

log = logging.getLogger(__name__)
STAGING = ".training"  # three deep with <job id>/<version>: no scan of MODEL_DIR reads it


def sweep_staging(model_dir: Path, store: JobStore) -> list[str]:
    """Remove the staging folders of jobs that are not running; the job ids removed."""
    root = model_dir / STAGING
    if not root.is_dir():
        return []
    removed = []
    for folder in sorted(root.iterdir()):
        job = store.get(folder.name)
        if job is not None and job.status == JobStatus.running:
            continue
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)
        else:
            folder.unlink(missing_ok=True)
        removed.append(folder.name)
    if removed:
        log.warning("removed %d staging folder(s) left by killed training runs: %s", len(removed), ", ".join(removed))
    return removed

"""The baseline: a bare Celery task per job that does nothing, same Redis, same delivery
settings (acks_late, prefetch) as the inference worker, one solo process.

    celery -A benchmarks.noop worker
"""

from shared.broker import make_celery
from shared.settings import get_settings

NOOP_TASK = "benchmarks.noop"
settings = get_settings()
app = make_celery(settings, "noop")
app.conf.update(worker_pool="solo", worker_concurrency=1)


@app.task(name=NOOP_TASK, acks_late=True)
def noop(*args):
    return None


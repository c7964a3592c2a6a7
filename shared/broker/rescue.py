"""Messages Redis lost in delivery, put back.

kombu's BRPOP and its unacked record are two steps: a worker that dies between them, or a
Redis that restarts between them, loses the message while its job stays queued. Each job's
record keeps its message's delivery tag until the job starts (shared/jobstore/lua/rescue.lua
finds a queued job whose tag is neither in its queue nor in the unacked hash); a new message
is built here and pushed (requeue.lua) for each.
"""

from celery import Celery

from shared.broker.envelopes import training_message
from shared.jobstore import JobStore
from shared.settings import Settings


def rescue_lost(store: JobStore, app: Celery, settings: Settings) -> int:
    """Put back a new message for each training job queued over a visibility timeout whose
    message Redis lost (the training worker trains on its consumer's thread: it keeps no
    heartbeat, so the inference worker's does it); how many. The inference queue is fair
    (shared/broker/fair.py): its BRPOP takes only doorbells, so it loses no message; a lost
    doorbell is rung again instead (JobStore.ring, each heartbeat)."""
    queue = settings.training_queue
    lost = store.find_lost(queue, settings.visibility_timeout_seconds)
    return store.requeue(queue, {job.job_id: training_message(app, queue, job.job_id) for job in lost})

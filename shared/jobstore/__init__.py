"""Job state in Redis, owned by this project (Celery's result backend is not used).

One hash per job with a retention TTL, and a sorted set indexing jobs by creation time for
listing. Every state change is a Lua script (lua/), so each is atomic:

    create   record + task message (+ idempotency key) together, or nothing      [API]
    start    queued -> running (or -> failed/expired past its deadline)            [worker]
    finish   running -> succeeded/failed, fills the result cache                   [worker]
    cancel   queued -> cancelled                                                   [API]

Webhook retries wait in a sorted set scored by Redis' clock (webhook_retry, webhook_due),
not in a worker, so they survive restarts.

A job therefore can never be both cancelled and run, and an expired record is never
resurrected. Finishing, cancelling and expiring publish the job ids on the keyspace's
finished channel, which wakes the API's long-polls.

    keys.py     every key name (one hash tag)
    records.py  the record <-> Job codec
    replies.py  what an operation is (Op), the scripts, and the replies callers get back
    ops/        every operation once: the command or script to send, how to read the reply
    sending.py  how an op goes over the wire (script, pipeline or command), sync and async
    store.py    the synchronous (worker) and asynchronous (API) faces that send them
"""

from shared.jobstore.keys import Keyspace
from shared.jobstore.ops import JobOps
from shared.jobstore.records import BATCH_ID, NewJob, new_job_id, new_record, to_job
from shared.jobstore.replies import Cancelled, Created, Held, Lost, Replay, Started
from shared.jobstore.store import AsyncJobStore, JobStore

__all__ = [
    "BATCH_ID", "AsyncJobStore", "Cancelled", "Created", "Held", "JobOps", "JobStore", "Keyspace", "Lost", "NewJob",
    "Replay", "Started", "new_job_id", "new_record", "to_job",
]

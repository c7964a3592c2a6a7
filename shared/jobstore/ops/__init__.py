"""Every job-store operation, once: what to send to Redis and how to read the reply.

An `Op` is one round trip (a plain command, a pipeline of them, or one of the Lua scripts in
lua/) plus the function that turns the reply into Python values, or into the next op: a
script is given every key it touches, so one whose keys are named by records' fields reads
those first (base.py). `JobStore` (worker, redis-py) and `AsyncJobStore` (API,
redis.asyncio) only send ops, so they cannot disagree.

    base.py      keyspace and retention; reading routing fields before a script
    jobs.py      a job's life: create, start, renew, finish, cancel, sweep, list
    webhooks.py  batches, webhook targets and attempts, the retry schedule
    fleet.py     workers, queues and the rescue of lost messages; Redis' health
"""

from shared.jobstore.ops.fleet import FleetOps
from shared.jobstore.ops.jobs import JobLifeOps
from shared.jobstore.ops.webhooks import WebhookOps


class JobOps(JobLifeOps, WebhookOps, FleetOps):
    """Builds every operation; holds the keyspace and retention, never a connection."""


__all__ = ["JobOps"]

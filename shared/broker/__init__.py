"""The broker seam: everything that knows kombu's message format and what its Redis
transport keeps in Redis. The rest of the code calls this interface, so a change of broker
(fair share, Sentinel) or of kombu is a change of this package.

    enqueue       envelopes.infer_message / training_message / webhook_messages: the message
                  text, written by the job store in the round trip that records the job
                  (shared/jobstore: create, push, requeue)
    take a burst  patch.install(): kombu's BRPOP, then one script that records and takes up
                  to the prefetch room more (QoS.take)
    ack many      patch.acknowledge(requests): a batch's records deleted in one round trip
    rescue        rescue.rescue_lost(store, app, settings): new messages for jobs whose
                  message Redis lost in delivery
    backlog       backlog.BacklogCollector: queued and in-flight counts, read at scrape time
    layout        layout: kombu's key names (queue list, unacked hash and index), task names
    app           app.make_celery: the one Celery app factory (API and the three workers)

Written for kombu 5.7.0 (compat.py refuses another at import).
"""

from shared.broker.compat import require

require("kombu")

from shared.broker.app import celery_config, fair_queues, make_celery  # noqa: E402
from shared.broker.envelopes import (  # noqa: E402
    InferMessage,
    WebhookHooks,
    batch_webhook_message,
    infer_message,
    redis_message,
    training_message,
    webhook_hooks,
    webhook_message,
)
from shared.broker.layout import (  # noqa: E402
    DELIVER_BATCH_TASK,
    DELIVER_TASK,
    INFER_TASK,
    TRAIN_TASK,
    UNACKED_HASH,
)

__all__ = [
    "DELIVER_BATCH_TASK",
    "DELIVER_TASK",
    "INFER_TASK",
    "TRAIN_TASK",
    "UNACKED_HASH",
    "InferMessage",
    "WebhookHooks",
    "batch_webhook_message",
    "celery_config",
    "fair_queues",
    "infer_message",
    "make_celery",
    "redis_message",
    "training_message",
    "webhook_hooks",
    "webhook_message",
]

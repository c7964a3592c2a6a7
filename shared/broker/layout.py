"""What kombu's Redis transport keeps in Redis, and the task names a message carries.

kombu 5.7.0 (see shared/broker/compat.py): a queue is a list named after the queue, whose
tail is the oldest message; a delivered message that is not yet acknowledged is a field of
the `unacked` hash (delivery tag -> [message, exchange, routing key]) and a member of the
`unacked_index` sorted set (scored by delivery time), which kombu's restore sweep reads.
Both are shared by every queue on the Redis. Our Lua scripts that touch them (create,
rescue, requeue, backlog in shared/jobstore/lua) are given these names in KEYS.
"""

# A fair queue's Celery list holds only this (shared/broker/fair.py): it wakes a worker's
# BRPOP, and is never delivered.
DOORBELL = "qi:doorbell"

UNACKED_HASH = "unacked"  # the index and kombu's own sweep are reached through kombu (patch.QoS)

INFER_TASK = "worker.infer"  # worker/inference, on QUEUE_NAME
TRAIN_TASK = "worker.train"  # worker/training, on TRAINING_QUEUE
DELIVER_TASK = "webhooks.deliver"  # worker/webhooks, on WEBHOOK_QUEUE
DELIVER_BATCH_TASK = "webhooks.deliver_batch"  # a batch's one event, once all its jobs ended

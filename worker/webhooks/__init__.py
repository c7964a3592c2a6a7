"""The webhook worker: signed deliveries on WEBHOOK_QUEUE, never importing TensorFlow.

    celery -A worker.webhooks.app worker
"""

"""The one Celery app factory: the API (it builds messages and sends events), the inference
worker, the webhook worker and the training worker each get their app here, with the
delivery settings every one of them relies on and a default queue of its own."""

from typing import Any

from celery import Celery

from shared.redisconn import target
from shared.settings import Settings


def broker_options(settings: Settings) -> tuple[str, dict[str, Any]]:
    """The broker URL and the transport options that find Redis: REDIS_URL as it is, or kombu's
    `sentinel://h1:p1;sentinel://h2:p2` with `master_name` (kombu raises without it) and the
    Sentinels' password in `sentinel_kwargs`. kombu's SentinelChannel subclasses the Redis
    Channel that shared.broker.patch patches, so the patch holds for it too."""
    where = target(settings)
    if not where.sentinels:
        return settings.redis_url, {}
    options: dict[str, Any] = {"master_name": where.master_name}
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": settings.redis_timeout_seconds,
                       "socket_connect_timeout": settings.redis_timeout_seconds}
    if where.sentinel_password:
        sentinel_kwargs["password"] = where.sentinel_password
    options["sentinel_kwargs"] = sentinel_kwargs
    return where.sentinel_urls, options


def celery_config(settings: Settings) -> dict:
    visibility = settings.visibility_timeout_seconds
    url, sentinel_options = broker_options(settings)
    return {
        "broker_url": url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            **sentinel_options,
            # An unacknowledged message (its worker died) is delivered again after this long.
            "visibility_timeout": visibility,
            # Sweep for such messages often enough that the timeout, not the sweep, decides.
            "unacked_restore_interval": max(1, min(10, visibility // 10)),
            "unacked_restore_throttle": 1,
            "socket_timeout": settings.redis_timeout_seconds,
            "socket_connect_timeout": settings.redis_timeout_seconds,
        },
        # Fail a publish fast when Redis is down: the API answers 503 instead of hanging.
        "task_publish_retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.2},
        "task_default_queue": settings.queue_name,
        "task_serializer": "json",
        "accept_content": ["json"],
        # Job state lives in our job store; Celery keeps no results.
        "task_ignore_result": True,
        "result_backend": None,
        # Acknowledge only after the batch ran, so a killed worker's jobs are redelivered.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Enough to fill the batches in flight, never the whole queue (the backlog stays
        # visible to other workers and to the autoscaler).
        "worker_prefetch_multiplier": settings.max_batch_size * settings.prefetch_batches,
        "worker_hijack_root_logger": False,
    }


def make_celery(settings: Settings, name: str, queue: str | None = None, cls: type[Celery] = Celery,
                **conf: Any) -> Celery:
    """A Celery app named `name` consuming `queue` (default: QUEUE_NAME), with `conf` over
    the shared configuration."""
    app = cls(name)
    app.conf.update(celery_config(settings))
    if queue is not None:
        app.conf.task_default_queue = queue
    app.conf.update(conf)
    return app


def fair_queues(settings: Settings) -> list[str]:
    """The queues every consumer installs as fair (patch.install; any consumer's restore sweep
    may restore any queue's message): the inference queue (by lane and key) and the webhook
    queue (one lane, one owner: a BRPOP takes only its doorbell, so no delivery is ever out
    of Redis without its record)."""
    return [settings.queue_name, settings.webhook_queue]

"""The one settings object for the API and the worker, read from the environment once."""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", protected_namespaces=())

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Broker and job store (unless REDIS_SENTINELS).")
    redis_sentinels: Annotated[list[str], NoDecode] = Field([], description=(
        "Comma-separated host:port of Redis Sentinels; set, every process finds the primary through them "
        "(REDIS_MASTER_NAME) and follows a failover; REDIS_URL then gives only the db number."))
    redis_master_name: str = Field("qi", description="The name the Sentinels monitor the primary under.")
    redis_password: str = Field(
        "", description="The data nodes' password with REDIS_SENTINELS (a REDIS_URL carries its own)."
    )
    redis_sentinel_password: str = Field("", description="The Sentinels' own password (requirepass of the sentinels).")
    redis_min_replicas_acked: int = Field(0, ge=0, description=(
        "0: off. n: POST /jobs answers 202 only once the job reached n replicas (WAIT), else 503; a worker "
        "acknowledges a message only once its finish reached them."))
    redis_wait_timeout_ms: int = Field(
        1000, ge=1, description="How long WAIT waits for REDIS_MIN_REPLICAS_ACKED replicas."
    )
    queue_name: str = Field("inference", description="Celery queue the API fills and workers drain.")
    log_level: str = Field("INFO", description="Python log level for the API and the worker.")

    model_dir: Path = Field(REPO_ROOT / "models", description="Folder of <name>/<version>/manifest.json.")
    default_model: str = Field("digits", description="Model used when a request names none.")
    model_scan_seconds: float = Field(
        10.0, gt=0, le=30, description="Workers and APIs rescan MODEL_DIR this often for versions added or removed."
    )
    model_poll_seconds: float = Field(
        1.0, gt=0, le=10, description="Workers and APIs check Redis for announced model changes this often."
    )
    max_loaded_versions: int = Field(
        2, ge=1, description="Versions of one model a worker keeps loaded at most (its default always among them)."
    )
    model_load_cooldown_seconds: float = Field(
        30.0, ge=0, le=3600,
        description="A worker starts at most one on-demand load (a loadable version it has not loaded) this often.",
    )

    max_upload_bytes: int = Field(10 * 1024 * 1024, gt=0, description="Larger uploads get 413.")
    max_image_pixels: int = Field(
        16_000_000, gt=0, description="Larger images (width x height, from the header) get 413 before decoding."
    )
    decode_in_worker_max_bytes: int = Field(
        64 * 1024, ge=0,
        description="POST /jobs: images up to this many bytes are stored as sent and decoded by the worker, "
                    "beside the model; larger ones (all with 0), and every batch item and /predict image, are "
                    "decoded by the API. The API reads every header: a body that is no image, or too many "
                    "pixels, is refused at submit; one whose pixels fail to decode fails with invalid_image.",
    )
    decode_workers: int = Field(2, ge=1, description="Large images decoded at once, off the event loop.")
    decode_backlog: int = Field(8, ge=0, description="Large images waiting to be decoded; beyond, 503.")

    job_ttl_seconds: int = Field(
        24 * 3600, gt=0, description="How long a job's record is kept while unfinished, and its Idempotency-Key."
    )
    finished_job_ttl_seconds: int = Field(
        3600, gt=0, description="How long a finished job's (compacted) record is kept; also GET /jobs' window."
    )
    visibility_timeout_seconds: int = Field(
        300, gt=0, description="An unacknowledged job is redelivered after this long (worker died)."
    )
    redis_timeout_seconds: float = Field(2.0, gt=0, description="Socket timeout for Redis calls.")
    redis_max_connections: int = Field(
        64, ge=1, description="The API's Redis connections per process; more requests wait for one."
    )
    body_timeout_seconds: float = Field(
        10.0, gt=0, description="A request body that sends nothing for this long gets 408."
    )
    body_deadline_seconds: float = Field(
        60.0, gt=0, description="A request body still arriving this long after the request began gets 408."
    )
    max_bodies_per_client: int = Field(
        8, ge=1, description="Request bodies (over 64 KiB, or chunked) one client address may send at once, "
                             "per API process; beyond, 503."
    )
    max_bodies: int = Field(
        64, ge=1, description="Request bodies (over 64 KiB, or chunked) being received at once, per API process; "
                              "beyond, 503."
    )
    read_rate_limit_per_minute: int = Field(
        6000, ge=1, description="Job reads (GET /jobs, /jobs/{id}, /batches/{id}) per minute per API key, "
                                "unless set per key."
    )
    max_long_polls_per_key: int = Field(
        100, ge=1, description="Long-polls (wait=S) one API key may hold at once, per API process; beyond, 429."
    )

    max_batch_size: int = Field(32, ge=1, description="Largest batch the worker runs at once.")
    max_delay_ms: int = Field(
        2, ge=0, description="How long the oldest waiting job waits for company when the model is free."
    )
    prefetch_batches: int = Field(2, ge=1, description="Prefetch = this many batches per worker.")
    fair_share: bool = Field(True, description=(
        "Serve the inference queue by lane (priority) and key, in weighted round robin; false: first come, first "
        "served, one lane (README: Fair share and priority lanes)."))
    job_lease_seconds: float = Field(
        60, gt=0, description="A running job's lease (at most half the visibility timeout), renewed by heartbeats."
    )
    max_job_runs: int = Field(3, ge=1, description="Runs a job gets when its worker keeps being lost.")
    worker_metrics_port: int = Field(9100, ge=0, description="Worker's Prometheus port (0: off).")
    ops_port: int = Field(
        9000, ge=0, le=65535, description="The API's ops port: /metrics, /queue, /healthz, not public (0: off)."
    )
    ops_host: str = Field(
        "127.0.0.1", description="Address the ops port listens on; containers set 0.0.0.0 (for KEDA, Prometheus)."
    )

    auth_disabled: bool = Field(
        False, description="Serve without API keys (experiments only; logged loudly). Never set in deployments."
    )
    rate_limit_per_minute: int = Field(
        600, ge=1, description="Submissions per minute per API key (a batch counts each file), unless set per key."
    )
    max_queued_jobs_per_key: int = Field(
        1000, ge=0, description="Queued + running jobs per API key, unless the key sets its own (0: no limit)."
    )
    max_records_per_key: int = Field(10_000, ge=0, description=(
        "Records one API key may make Redis hold (its jobs until their records expire, their Idempotency-Keys, "
        "batches), unless the key sets its own; beyond, 429 `budget` (0: no limit)."))

    result_cache_ttl_seconds: int = Field(
        3600, ge=0, description="Identical uploads reuse a result this long (0: off)."
    )
    predict_timeout_seconds: float = Field(30, gt=0, le=60, description="POST /predict waits this long, then 504.")
    max_batch_files: int = Field(64, ge=1, description="Most files in one POST /jobs/batch or /predict/batch.")
    max_queued_jobs: int = Field(
        10_000, ge=0, description="Jobs queued or in flight beyond which submissions get 503 (0: no limit)."
    )
    max_batch_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="Largest body of a batch request (all its files); larger gets 413."
    )

    # Lists are comma-separated in the environment (NoDecode: not JSON), split once here.
    webhook_secret: Annotated[list[str], NoDecode] = Field(
        [], description="Comma-separated whsec_ secrets; the first is current, all sign."
    )
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        [], description="Comma-separated host or host:port exempt from the SSRF guard."
    )
    webhook_queue: str = Field("webhooks", description="Celery queue for webhook deliveries.")
    # Defaults: retries over 25.7 to 51.4 hours (jitter), like Standard Webhooks' 27.6 h.
    webhook_max_attempts: int = Field(18, ge=1, description="Delivery attempts before giving up.")
    webhook_backoff_seconds: float = Field(5.0, gt=0, description="First retry delay; doubles each attempt.")
    webhook_backoff_max_seconds: float = Field(36000.0, gt=0, description="Longest delay between attempts.")
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, description="Deadline of one delivery attempt (resolve, connect, send, response)."
    )
    # Fairness between keys (worker/webhooks/gate.py) and caps on how long a delivery lives.
    webhook_max_in_flight_per_key: int = Field(
        4, ge=0, description="Most delivery attempts of one key under way at once, all webhook workers together; "
        "more wait in Redis, not on a thread (0: no limit)."
    )
    webhook_breaker_failures: int = Field(
        5, ge=1, description="Failed attempts in a row (no answer, 429, 5xx) after which a key's receiver (host:port) "
        "is not tried for WEBHOOK_BREAKER_SECONDS."
    )
    webhook_breaker_seconds: float = Field(
        60.0, gt=0, description="Cooldown of an open circuit breaker; then one attempt probes the receiver."
    )
    webhook_retry_after_max_seconds: float = Field(
        3600.0, ge=0, description="Longest Retry-After of a receiver that is honoured; a longer one counts as this."
    )
    webhook_retry_keep_seconds: int = Field(
        86400, gt=0, description="Retries (and deferrals) end this long after the job finished: no delivery keeps "
        "a record alive longer; the delivery then fails for good."
    )

    # Training a new version from a ZIP (POST /models/{name}/versions; worker/training/app.py).
    training_queue: str = Field("training", description="Celery queue of training jobs (the training worker's).")
    training_max_upload_bytes: int = Field(
        32 * 1024 * 1024, gt=0, description="Largest training ZIP; larger gets 413."
    )
    training_max_uncompressed_bytes: int = Field(
        128 * 1024 * 1024, gt=0, description="Most bytes a training ZIP may expand to, all entries together (413)."
    )
    training_max_files: int = Field(10_000, ge=1, description="Most entries in a training ZIP (413).")
    training_max_ratio: float = Field(
        100.0, gt=1, description="Largest compression ratio of a training ZIP entry, or of the whole (413)."
    )
    training_min_images_per_label: int = Field(
        5, ge=2, description="Fewest images a label's folder must hold (422); one in five is held out."
    )
    training_epochs: int = Field(30, ge=1, le=1000, description="Epochs a training job runs.")
    training_time_limit_seconds: float = Field(
        1800, gt=0, description="A training job still training after this long fails with `time_limit`."
    )
    training_max_queued_jobs: int = Field(
        4, ge=1, description="Training jobs queued at once (each holds its ZIP in Redis); beyond, 503."
    )

    @property
    def lease_seconds(self) -> float:
        """The lease a running job gets: at most half the visibility timeout, because kombu
        redelivers a message after it, and by then a dead worker's lease must have ended
        (else the redelivery would be dropped as a duplicate of a live run)."""
        return min(self.job_lease_seconds, self.visibility_timeout_seconds / 2)

    @field_validator("webhook_secret", "webhook_allowed_hosts", "redis_sentinels", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()

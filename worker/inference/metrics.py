"""Prometheus metrics of a worker process, served on WORKER_METRICS_PORT."""

from prometheus_client import Counter, Gauge, Histogram

BATCH_SIZE = Histogram(
    "inference_batch_size", "Jobs per batch run", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)
QUEUE_WAIT = Histogram(
    "inference_queue_wait_seconds", "From submission to the start of its batch, per lane (high, normal, low)",
    ["lane"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
INFERENCE = Histogram(
    "inference_duration_seconds", "Model time per batch", ["model"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
JOBS = Counter("inference_jobs_total", "Jobs finished by a worker", ["model", "outcome"])
MODEL_LOAD = Gauge("inference_model_load_seconds", "Time to load and warm a model", ["model"])

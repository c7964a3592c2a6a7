"""Every Redis command the project sends stays fast whatever the backlog: fill a real Redis
with N queued jobs (1,000,000 by default) of K API keys (10,000) in the fair queue's three
lanes, then run each job-store operation and a worker's fair take, and read the slowest
execution of each command from Redis' own SLOWLOG.

    make bench-backlog                  # = .venv/bin/python -m benchmarks.backlog
    .venv/bin/python -m benchmarks.backlog --jobs 100000 --keys 1000
"""

import argparse
import tempfile
import time
from collections import defaultdict
from hashlib import sha1
from pathlib import Path
from typing import Any

from devstack.processes import RedisServer
from shared.apikeys import KeyOps
from shared.broker import infer_message, make_celery, patch
from shared.broker.fair import FairQueue
from shared.broker.layout import DOORBELL
from shared.jobstore import JobStore, NewJob, new_job_id, new_record
from shared.jobstore.replies import SCRIPTS, Op
from shared.keystore import KeyStore
from shared.registry import Registry
from shared.schemas import ErrorCode, JobError, LabelScore, Prediction, Serves, WebhookState
from shared.settings import REPO_ROOT, Settings

QUEUE = "inference"
LIMIT_MS = 10.0
DIGITS_INPUT = "A" * 88  # 8x8 uint8 pixels, base64
OWNER = "0123456789abcdef"  # half the jobs are this key's: its index and quota set are the longest
LANES = ("normal",) * 8 + ("high", "low")  # a job's lane, by its number mod 10


def owner_of(i: int, keys: int) -> str:
    """Job i's key: every other job OWNER's, the rest spread over `keys` keys."""
    return OWNER if i % 2 == 0 else f"{(i // 2) % keys:016x}"


def fill(store: JobStore, client, jobs: int, keys: int = 1) -> list[str]:
    """`jobs` queued digits jobs of `keys` API keys (see owner_of), each with its input and
    message, written as the API writes them (create.lua), a thousand per round trip; their
    ids, oldest first."""
    manifest = Registry(REPO_ROOT / "models", "digits").resolve(None)
    celery = make_celery(Settings(), "bench")
    template_tag, template = infer_message(celery, QUEUE, "x" * 32, manifest.key, 0.0)
    script = client.register_script(SCRIPTS["create"])
    ids = []
    for start in range(0, jobs, 1000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(start + 1000, jobs)):
            job_id = new_job_id()
            message = template.replace("x" * 32, job_id).replace(template_tag, job_id)  # a tag of its own
            fields = new_record(manifest, job_id, input=DIGITS_INPUT, tag=job_id, owner=owner_of(i, keys))
            new = NewJob(fields, message, lane=LANES[i % 10])
            op = store.ops.create(new, QUEUE, max_active=10**9)  # the quota's count too
            script(keys=op.keys, args=op.args, client=pipe)
            ids.append(job_id)
        pipe.execute()
    return ids


def finished_bytes(store: JobStore, client, jobs: int = 10_000) -> float:
    """Redis memory a finished digits job keeps (its compacted record and index entry), from
    `jobs` jobs created, started and finished with a real digits result; then flushed."""
    before = client.info("memory")["used_memory"]
    ids = fill(store, client, jobs)
    client.delete(QUEUE, *client.keys("*fair:*"))  # the messages were delivered
    result = Prediction(label="7", score=0.99, top_k=[LabelScore(label=str(i), score=0.1) for i in range(5)],
                        probabilities=[0.1] * 10)
    for start in range(0, jobs, 32):
        batch = ids[start:start + 32]
        store.start(batch, "bench-run")
        store.finish(dict.fromkeys(batch, result), "bench-run")
    after = client.info("memory")["used_memory"]
    client.flushall()
    return (after - before) / jobs


def exercise(store: JobStore, client, ids: list[str]) -> None:
    """Each operation the API and the workers send, as they send it, on queued jobs `ids`."""
    for _ in range(20):
        store.heartbeat("bench@host", 15, Serves(models=["digits:1"]))
        store.workers()
        store.backlog(QUEUE)
        store.ring(QUEUE)
        store.requeue("training", {lost.job_id: ("tag", "{}") for lost in store.find_lost("training", older_than=0)})
        fair = FairQueue(QUEUE, store.keys)  # a worker's burst of two batches (patch.QoS.take)
        patch._FAIR_TAKE(client, fair.take_keys("unacked_index", "unacked"), fair.take_args(time.time(), 64, DOORBELL))
        store.sweep_lost(grace_seconds=0)
        store.ping()
    run = new_job_id()
    started = store.start(ids[:32], run)
    store.finish({job_id: JobError(code=ErrorCode.inference_error, message="bench")
                  for job_id, s in zip(ids[:32], started, strict=True) if s.runs}, run)
    for job_id in ids[32:]:
        store.get(job_id)
        store.record_webhook_attempt(job_id, WebhookState())
    store.push("webhooks", ["{}"] * 16)
    store.move_due_webhooks("webhooks")
    record, key = KeyStore(client, store.keys).create("bench")
    key_id = record.id
    rate = KeyOps(store.keys).rate(key_id, 600, 60, 1)
    async_ops: list[Op[Any]] = [store.ops.recent(100, None, None, 1000), store.ops.recent(100, None, None, 1000, OWNER),
                 store.ops.cancel(ids[-1], OWNER), store.ops.cached_result("x"), KeyOps(store.keys).authenticate(key),
                 rate, store.ops.get(ids[-2], OWNER), store.ops.create_batch("bench", ids[:64], OWNER),
                 store.ops.batch("bench", 0, 100, OWNER)]
    for op in async_ops:  # the API's operations, the same round trips the async face sends
        store.run(op)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=10_000, help="API keys the jobs are spread over")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            client = server.client()
            client.config_set("maxmemory", 0)  # the backlog is the point here, not the memory cap
            client.config_set("appendonly", "no")
            store = JobStore.connect(server.url, 86400, timeout=60)
            finished = finished_bytes(store, client)
            started = time.perf_counter()
            ids = fill(store, client, args.jobs, args.keys)[:64]  # the oldest queued jobs
            filled = time.perf_counter() - started
            memory = client.info("memory")["used_memory"]
            client.config_set("slowlog-log-slower-than", 0)  # log every command ...
            client.config_set("slowlog-max-len", 100_000)
            client.slowlog_reset()
            exercise(store, client, ids)
            slowest: dict[str, float] = defaultdict(float)
            scripts = {sha1(text.encode()).hexdigest(): name for name, text in SCRIPTS.items()}
            scripts[patch._FAIR_TAKE.sha] = "take (fair, burst of 64)"
            for entry in client.slowlog_get(100_000):
                command = entry["command"]
                words = (command.decode(errors="replace") if isinstance(command, bytes) else command).split()
                name = words[0].upper()
                if name == "EVALSHA":  # the whole script (its own commands are logged too)
                    name = f"script {scripts.get(words[1], words[1])}"
                slowest[name] = max(slowest[name], entry["duration"] / 1000)
        finally:
            server.stop()
    print(f"backlog: {args.jobs:,} queued jobs of {args.keys + 1:,} keys (filled in {filled:.0f} s; "
          f"Redis used {memory / 2**20:,.0f} MiB, "
          f"{memory / args.jobs:,.0f} B per queued job; {finished:,.0f} B per finished job)\n")
    print("| command | slowest execution | within 10 ms |\n|---|---|---|")
    for name, ms in sorted(slowest.items(), key=lambda item: -item[1]):
        print(f"| {name} | {ms:.3f} ms | {'yes' if ms <= LIMIT_MS else '**no**'} |")


if __name__ == "__main__":
    main()

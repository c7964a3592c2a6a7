"""Workers and queues: heartbeats and who is live, the backlog, and the rescue of messages
Redis lost in delivery; plus Redis' own health."""

import json
import time
from typing import Any

from shared.broker.layout import DOORBELL, UNACKED_HASH
from shared.jobstore.ops.base import OpsBase, args
from shared.jobstore.replies import Lost, Op
from shared.schemas import LANES, Serves, WorkerInfo


class FleetOps(OpsBase):
    def find_lost(self, queue: str, older_than: float, limit: int) -> Op[list[Lost]]:
        """Queued jobs whose message Redis lost in delivery: the queued set's entries up to
        the cutoff and the queue's tail are read first, then checked (see lua/rescue.lua)."""
        now = time.time()
        cutoff = now - older_than

        def parse(rows: list[list[str]]) -> list[Lost]:
            return [Lost(job_id, f"{name}:{version}", float(created)) for job_id, name, version, created in rows]

        def check(reply: tuple[list[str], str | None]) -> list[Lost] | Op[list[Lost]]:
            ids, tail = reply
            if not ids:
                return []
            tail_id = json.loads(tail)["headers"]["id"] if tail else ""
            keys = (self.keys.queued(queue), queue, UNACKED_HASH,
                    self.keys.job(tail_id) if tail_id else self.keys.absent, *(self.keys.job(j) for j in ids))
            return Op(args(cutoff=cutoff, now=now, tail=tail_id, ids=ids), parse, "rescue", keys)

        commands = (("ZRANGEBYSCORE", self.keys.queued(queue), "-inf", repr(cutoff), "LIMIT", 0, limit),
                    ("LINDEX", queue, -1))
        return Op((), check, commands=commands)

    def requeue(self, queue: str, messages: dict[str, tuple[str, str]]) -> Op[int]:
        """Put back new messages (job id -> (delivery tag, message)) for jobs still queued."""
        keys = (queue, *(self.keys.job(job_id) for job_id in messages))
        return Op(tuple(v for pair in messages.values() for v in pair), int, "requeue", keys)

    def queue_length(self, queue: str) -> Op[int]:
        """Messages waiting in a queue (not those delivered)."""
        return Op(("LLEN", queue), int)

    def take_training_slot(self, job_id: str, slots: int, hold_seconds: float) -> Op[bool]:
        """One of `slots` training slots for `job_id`, or False when all are held (see
        lua/training_slot.lua)."""
        return Op((job_id, slots, int(hold_seconds)), lambda reply: bool(int(reply)), "training_slot",
                  (self.keys.training_slots,))

    def release_training_slot(self, job_id: str) -> Op[bool]:
        """The training worker is done with the job's message (or the API recorded nothing)."""
        return Op(("ZREM", self.keys.training_slots, job_id), bool)

    def backlog(self, queue: str) -> Op[dict[str, Any]]:
        """A fair queue's jobs waiting (in all, and per lane), and delivered to a worker but
        not yet acknowledged (see lua/backlog.lua)."""

        def parse(reply: list[int]) -> dict[str, Any]:
            *waiting, in_flight = reply
            lanes = {str(lane): int(n) for lane, n in zip(LANES, waiting, strict=True)}
            queued = sum(lanes.values())
            return {"queued": queued, "in_flight": in_flight, "total": queued + in_flight, "lanes": lanes}

        return Op((), parse, "backlog", (self.keys.fair_state(queue), self.keys.held(queue)))

    def ring(self, queue: str) -> Op[bool]:
        """A doorbell for a fair queue whose jobs wait with none (see lua/ring.lua)."""
        return Op((DOORBELL,), lambda reply: reply == 1, "ring", (queue, self.keys.fair_state(queue)))

    def heartbeat(self, hostname: str, ttl: int, serves: Serves) -> Op[Any]:
        keys = (self.keys.workers, self.keys.worker_models)
        return Op((hostname, ttl, serves.model_dump_json()), lambda reply: reply, "heartbeat", keys)

    def forget_worker(self, hostname: str) -> Op[Any]:
        return Op(("ZREM", self.keys.workers, hostname), lambda reply: reply)

    def workers(self) -> Op[list[WorkerInfo]]:
        """Workers whose heartbeat is current, by name, with what each serves."""

        def parse(reply: list[str]) -> list[WorkerInfo]:
            pairs = zip(reply[::2], reply[1::2], strict=True)
            return sorted((WorkerInfo(name=name, **(json.loads(serves) if serves else {})) for name, serves in pairs),
                          key=lambda worker: worker.name)

        return Op((), parse, "workers", (self.keys.workers, self.keys.worker_models))

    def ping(self) -> Op[bool]:
        return Op(("PING",), bool)

    def full(self) -> Op[bool]:
        """Redis is at its maxmemory: writes that add data are refused (noeviction)."""

        def parse(info: dict[str, Any]) -> bool:
            return bool(info.get("maxmemory")) and info["used_memory"] >= info["maxmemory"]

        return Op(("INFO", "memory"), parse)

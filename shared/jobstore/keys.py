"""Every Redis key of ours: one `Keyspace` names them all, under one hash tag (README: Redis
Cluster), so a change of key layout is a change of this module. The Lua scripts get every
key they touch from their caller, never a prefix to build one from."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Keyspace:
    """Every Redis key the job store uses; one prefix can keep two deployments apart.

    Every key carries one hash tag (`{qi}`), so all of them hash to one Redis Cluster slot
    and any script may touch any set of them (see README, "Redis Cluster"). Scripts get
    every key they touch in KEYS, never a prefix to build one from."""

    prefix: str = ""
    tag: str = "qi"

    def _key(self, name: str) -> str:
        return f"{self.prefix}{{{self.tag}}}:{name}"

    @property
    def absent(self) -> str:
        """Passed in KEYS where a call has no such key (a job without an owner, ...): a
        script never writes it, so it never exists ('' would hash to another slot)."""
        return self._key("absent")

    def job(self, job_id: str) -> str:
        return self._key(f"job:{job_id}")

    @property
    def index(self) -> str:
        """Sorted set of job ids by creation time, for listing."""
        return self._key("jobs:index")

    def queued(self, queue: str) -> str:
        """Sorted set of a queue's queued job ids whose message the rescue sweep watches."""
        return self._key(f"jobs:queued:{queue}")

    # Fair share (shared/broker/fair.py): a fair queue's messages wait per lane and owner.

    def fair_jobs(self, queue: str, lane: str, owner: str) -> str:
        """List: one owner's messages waiting in one lane of a fair queue (head newest)."""
        return f"{self.fair_prefix(queue)}{lane}:{owner or '-'}"

    def fair_prefix(self, queue: str) -> str:
        """What fair_jobs' names start with: the take script names the owners' lists it
        visits from it (which it visits is decided inside the script; all carry the tag)."""
        return self._key(f"fair:{queue}:")

    def fair_ring(self, queue: str, lane: str) -> str:
        """List: the owners with messages waiting in a lane, in round-robin order."""
        return self._key(f"fair:{queue}:{lane}")

    def fair_state(self, queue: str) -> str:
        """Hash: a fair queue's depth per lane, pick counter and the ring heads' credit."""
        return self._key(f"fair:{queue}")

    @property
    def fair_weights(self) -> str:
        """Hash: owner (key id) -> fair-share weight, written as its jobs enter a ring and by
        `api.keys set --weight`."""
        return self._key("fair:weights")

    def held(self, queue: str) -> str:
        """Set: delivery tags of a fair queue's messages a worker holds (taken, not yet
        acknowledged): the in-flight count (kombu's `unacked` hash is every queue's)."""
        return self._key(f"fair:{queue}:held")

    @property
    def replicated(self) -> str:
        """String: written before a WAIT that must cover writes made on another connection (a
        replayed create: REDIS_MIN_REPLICAS_ACKED). Replication is in order, so a replica that
        has this write has every earlier one."""
        return self._key("replicated")

    @property
    def finished_channel(self) -> str:
        """Pub/sub channel of finished job ids (comma-separated): wakes long-polls."""
        return self._key("jobs:finished")

    @property
    def running(self) -> str:
        """Sorted set of running job ids by when their lease ends."""
        return self._key("jobs:running")

    @property
    def workers(self) -> str:
        """Sorted set of live workers by when their heartbeat lapses."""
        return self._key("workers")

    @property
    def worker_models(self) -> str:
        """Hash of what each live worker serves (JSON of shared.schemas.Serves)."""
        return self._key("workers:models")

    def batch(self, batch_id: str) -> str:
        """String: a batch's JSON record (owner, created_at, its job ids in order)."""
        return self._key(f"batch:{batch_id}")

    def batch_hook(self, batch_id: str) -> str:
        """Hash: a batch's webhook, armed until its last job ends (see lua/batch_create.lua)."""
        return self._key(f"batch:{batch_id}:hook")

    def idempotency(self, client_key: str) -> str:
        return self._key(f"idem:{client_key}")

    def cache(self, owner: str | None, model_key: str, digest: str) -> str:
        """One owner's result for these image bytes (never shared: a hit would tell one key
        what another sent)."""
        return self._key(f"cache:{owner or ''}:{model_key}:{digest}")

    def owner_index(self, owner: str) -> str:
        """Sorted set of one API key's job ids by creation time: its GET /jobs."""
        return self._key(f"jobs:index:{owner}")

    def active(self, owner: str) -> str:
        """Sorted set of one API key's queued and running job ids (by creation time): its
        quota; and of what it holds ended (member -> -(when it expires)): its record budget.
        Each terminal transition moves the job from the first to the second (lua/_held.lua)."""
        return self._key(f"jobs:active:{owner}")

    def api_key(self, key_id: str) -> str:
        """Hash: one API key's record (see shared/apikeys.py)."""
        return self._key(f"apikey:{key_id}")

    def api_key_digest(self, sha256: str) -> str:
        """String: the id of the API key with this SHA-256."""
        return self._key(f"apikey:digest:{sha256}")

    @property
    def api_keys(self) -> str:
        """Hash: API key name -> key id."""
        return self._key("apikeys")

    def rate(self, key_id: str) -> str:
        """String: one API key's submission rate state (see lua/rate.lua)."""
        return self._key(f"rate:{key_id}")

    def read_rate(self, key_id: str) -> str:
        """String: one API key's job-read rate state (lua/rate.lua; api/reads.py)."""
        return self._key(f"read-rate:{key_id}")

    @property
    def model_versions(self) -> str:
        """Hash: model name -> the last version number a training job reserved (see
        lua/reserve_version.lua)."""
        return self._key("models:reserved")

    @property
    def training_slots(self) -> str:
        """Sorted set: training job id -> when its slot lapses (lua/training_slot.lua): the
        training jobs queued or running, at most TRAINING_MAX_QUEUED_JOBS."""
        return self._key("training:slots")

    def webhook_retries(self, queue: str) -> str:
        """Sorted set of webhook deliveries waiting to be retried (task message -> when it is
        due, Redis' clock), for the webhook queue `queue`."""
        return self._key(f"webhooks:due:{queue}")

    def webhook_in_flight(self, owner: str | None) -> str:
        """Sorted set: one owner's webhook attempts under way (token -> when its lease ends),
        at most WEBHOOK_MAX_IN_FLIGHT_PER_KEY entries, expiring (lua/webhook_gate.lua)."""
        return self._key(f"webhooks:inflight:{owner or '-'}")

    def webhook_breaker(self, owner: str | None, receiver: str) -> str:
        """Hash: the circuit breaker of one owner's deliveries to one receiver (host:port):
        failures in a row and when it opens again, expiring (lua/webhook_done.lua)."""
        return self._key(f"webhooks:breaker:{owner or '-'}:{receiver}")

    # The model catalog (shared.catalog), which every API process and worker follows.

    @property
    def model_defaults(self) -> str:
        """Hash: model name -> its default version, where an admin or a training job set one."""
        return self._key("models:defaults")

    @property
    def model_loadable(self) -> str:
        """Set of 'name:version': the versions an admin marked loadable on demand (a worker
        that has not loaded one loads it for its jobs; worker.inference.loads)."""
        return self._key("models:loadable")

    @property
    def model_epoch(self) -> str:
        """String: a counter bumped by every change of the versions or the defaults."""
        return self._key("models:epoch")

    @property
    def models_channel(self) -> str:
        """Pub/sub channel carrying each new model epoch."""
        return self._key("models:changed")


DEFAULT_KEYSPACE = Keyspace()

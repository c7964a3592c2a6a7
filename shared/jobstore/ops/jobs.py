"""A job's life: create, read, start, renew, progress, finish, cancel, sweep, list."""

from collections.abc import Mapping

from shared.broker.layout import DOORBELL
from shared.jobstore.ops.base import EXPIRED, LOST, OpsBase, Route, args, route_keys
from shared.jobstore.records import JOB_FIELDS, WEBHOOK_FIELDS, NewJob, as_fields, read_job, split_events
from shared.jobstore.replies import Cancelled, Created, Held, Op, Replay, Started
from shared.schemas import (
    ErrorCode,
    Job,
    JobError,
    JobStatus,
    Prediction,
    TrainingProgress,
    TrainingResult,
    WebhookEvent,
)

Page = tuple[list[Job], float | None]  # GET /jobs' page and its cursor


class JobLifeOps(OpsBase):
    def create(self, new: NewJob, queue: str, max_queued: int = 0, max_active: int = 0,
               fair: bool = True, max_records: int = 0) -> Op[Created]:
        """Record the job and push its message, atomically, by Redis' clock; an
        Idempotency-Key used already (per owner), a backlog at `max_queued`, an owner with
        `max_active` jobs queued or running, or one holding `max_records` records (see
        lua/_held.lua), writes nothing. `fair`: the queue is served by lane and owner
        (shared/broker/fair.py), else first come first served (training)."""
        owner = new.fields.get("owner", "")
        member = owner if new.fair_owner is None else new.fair_owner  # whose list and turn
        idempotency = self.keys.idempotency(f"{owner}:{new.idempotency_key}") if new.idempotency_key else None
        keys = (self.keys.job(new.id), queue, self._or_absent(idempotency), self.keys.index,
                self.keys.fair_state(queue), self.keys.held(queue),
                self.keys.owner_index(owner) if owner else self.keys.absent,
                self.keys.active(owner) if owner else self.keys.absent,
                self.keys.fair_jobs(queue, new.lane, member), self.keys.fair_ring(queue, new.lane),
                self.keys.fair_weights, self.keys.queued(queue), *self._hook_keys())
        script_args = args(
            ttl=self.ttl, message=new.message, claim=f"{new.id}|{new.fingerprint}" if idempotency else "",
            expires_in="" if new.expires_in is None else repr(new.expires_in), id=new.id, max_queued=max_queued,
            keep=self.finished_ttl, owner=owner, max_active=max_active,
            fields=[v for item in new.fields.items() for v in item], lane=new.lane, weight=new.weight,
            member=member or "-", doorbell=DOORBELL, fair=fair, hooks=self._hook_args(),
            max_records=max_records)

        def parse(reply: list) -> Created:
            if reply[0] == "replay":
                return Created(replay=Replay(*reply[1].split("|", 1)))
            if reply[0] == "full":
                return Created(backlog=int(reply[1]))
            if reply[0] == "quota":
                return Created(active=int(reply[1]))
            if reply[0] == "budget":
                return Created(held=Held(int(reply[1]), int(reply[2])))
            stamps = {"created_at": reply[1], **({"deadline": reply[2]} if reply[2] else {})}
            if new.fields["status"] != JobStatus.queued:  # a cached result: done at once
                stamps.update(started_at=reply[1], finished_at=reply[1])
            return Created(fields={**new.fields, **stamps})

        return Op(script_args, parse, "create", keys)

    def held(self, owner: str) -> Op[Held]:
        """How many records `owner` holds, and when the next expires (see lua/held.lua)."""
        return Op((self.ttl, self.finished_ttl), lambda reply: Held(int(reply[0]), int(reply[1])), "held",
                  (self.keys.active(owner),))

    def get(self, job_id: str, owner: str | None = None) -> Op[Job | None]:
        """The job; None when it is gone, or belongs to another owner than `owner` (None:
        any owner)."""
        names = (*JOB_FIELDS, "owner")

        def parse(values: list[str | None]) -> Job | None:
            return read_job(as_fields(JOB_FIELDS, values[:-1])) if owner is None or values[-1] == owner else None

        return Op(("HMGET", self.keys.job(job_id), *names), parse)

    def start(self, job_ids: list[str], run: str, lease_seconds: float, max_runs: int) -> Op[list[Started]]:
        """Lease runnable jobs to `run` (see lua/start.lua)."""

        def parse(rows: list[list[str]]) -> list[Started]:
            return [Started(JobStatus(before) if before else None, verdict == "run",
                            ErrorCode.worker_lost if verdict == "lost" else ErrorCode.expired if verdict == "expired"
                            else None, split_events(events), job_input or None)
                    for before, verdict, events, job_input in rows]

        def build(routes: list[Route]) -> Op[list[Started]]:
            script_args = args(expired=EXPIRED.model_dump_json(), lost=LOST.model_dump_json(),
                               channel=self.keys.finished_channel, max_runs=max_runs, run=run, lease=lease_seconds,
                               keep=self.finished_ttl, ids=job_ids, seen=[route.seen for route in routes],
                               hooks=self._hook_args())
            return Op(script_args, parse, "start", (self.keys.running, *route_keys(routes), *self._hook_keys()))

        return self._routed(job_ids, build)

    def finish(self, outcomes: Mapping[str, Prediction | TrainingResult | JobError], run: str) -> Op[list[str]]:
        """Terminal outcomes of one run's jobs; the reply is every id this run finished,
        also when the call is a retry (see lua/finish.lua)."""
        job_ids = list(outcomes)
        statuses = [JobStatus.failed if isinstance(o, JobError) else JobStatus.succeeded for o in outcomes.values()]
        values = [o.model_dump_json() for o in outcomes.values()]

        def build(routes: list[Route]) -> Op[list[str]]:
            script_args = args(channel=self.keys.finished_channel, cache_ttl=self.cache_ttl, run=run,
                               keep=self.finished_ttl, ids=job_ids, seen=[route.seen for route in routes],
                               statuses=statuses, values=values, hooks=self._hook_args())
            return Op(script_args, list, "finish", (self.keys.running, *route_keys(routes), *self._hook_keys()))

        return self._routed(job_ids, build)

    def renew(self, job_ids: list[str], run: str, lease_seconds: float) -> Op[int]:
        """Extend the leases of jobs `run` still runs (see lua/renew.lua)."""
        keys = (self.keys.running, *(self.keys.job(j) for j in job_ids))
        return Op((run, lease_seconds, *job_ids), int, "renew", keys)

    def progress(self, job_id: str, run: str, progress: TrainingProgress) -> Op[bool]:
        """A training job's progress, written by the run that holds it (see lua/progress.lua)."""
        return Op((run, progress.model_dump_json()), bool, "progress", (self.keys.job(job_id),))

    def sweep_lost(self, grace_seconds: float, limit: int) -> Op[dict[str, list[WebhookEvent]]]:
        """Fail running jobs nobody took over long after their lease ended (lua/overdue.lua
        finds them, lua/sweep_lost.lua fails them); the reply maps each to its webhook
        events."""

        def parse(rows: list[list[str]]) -> dict[str, list[WebhookEvent]]:
            return {job_id: split_events(events) for job_id, events in rows}

        def build(routes: list[Route]) -> Op[dict[str, list[WebhookEvent]]]:
            script_args = args(grace=grace_seconds, error=LOST.model_dump_json(), channel=self.keys.finished_channel,
                               keep=self.finished_ttl, ids=[route.id for route in routes],
                               seen=[route.seen for route in routes], hooks=self._hook_args())
            return Op(script_args, parse, "sweep_lost", (self.keys.running, *route_keys(routes), *self._hook_keys()))

        def candidates(ids: list[str]) -> dict[str, list[WebhookEvent]] | Op[dict[str, list[WebhookEvent]]]:
            return self._routed(ids, build) if ids else {}

        return Op((grace_seconds, limit), candidates, "overdue", (self.keys.running,))

    def cancel(self, job_id: str, owner: str | None = None) -> Op[Cancelled]:
        """Cancel the job if queued; another owner's job (unless `owner` is None) is gone."""
        names = (*JOB_FIELDS, *WEBHOOK_FIELDS)

        def parse(reply: list) -> Cancelled:
            if not reply[0]:
                return Cancelled(None, None, [])
            before, fields = reply[0], as_fields(names, reply[1])
            events = split_events(fields.get("webhook_events")) if fields.get("webhook_url") else []
            return Cancelled(JobStatus(before) if before else None, read_job(fields), events)

        def build(routes: list[Route]) -> Op[Cancelled]:
            script_args = args(channel=self.keys.finished_channel, id=job_id, keep=self.finished_ttl,
                               caller=owner or "", fields=names, seen=[routes[0].seen], hooks=self._hook_args())
            return Op(script_args, parse, "cancel", (*routes[0].keys, *self._hook_keys()))

        return self._routed([job_id], build)

    def recent(self, limit: int, before: float | None, status: JobStatus | None,
               scan_limit: int, owner: str | None = None) -> Op[Page]:
        """Newest first, created before `before`, examining at most scan_limit entries;
        `owner`'s jobs only, unless None (every job). The entries are read first, then their
        records (lua/recent.lua)."""
        high = f"({before!r}" if before is not None else "+inf"
        index = self.keys.owner_index(owner) if owner else self.keys.index

        def entries(reply: list[tuple[str, float]]) -> Page | Op[Page]:
            ids, scores = [entry[0] for entry in reply], [float(entry[1]) for entry in reply]  # redis-py pairs them

            def parse(page: list) -> Page:
                jobs = [read_job(as_fields(JOB_FIELDS, values)) for values in page[1:]]
                # The cursor: the last job returned when the page is full, else the last entry
                # examined when more may follow, else none.
                cursor = scores[page[0] - 1] if page[0] else scores[-1] if len(ids) == scan_limit else None
                return [job for job in jobs if job], cursor

            if not ids:
                return [], None
            keys = tuple(self.keys.job(job_id) for job_id in ids)
            return Op((limit, status.value if status else "", *JOB_FIELDS), parse, "recent", keys)

        return Op(("ZREVRANGEBYSCORE", index, high, "-inf", "WITHSCORES", "LIMIT", 0, scan_limit), entries)

    def reserve_version(self, name: str, highest_on_disk: int) -> Op[str]:
        """The next version of model `name` for a training job (see lua/reserve_version.lua)."""
        return Op((name, highest_on_disk), lambda reply: str(int(reply)), "reserve_version",
                  (self.keys.model_versions,))

    def cached_result(self, cache_key: str) -> Op[str | None]:
        return Op(("GET", cache_key), lambda value: value)

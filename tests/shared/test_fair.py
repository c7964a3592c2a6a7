"""The fair queue's take script (shared/broker/lua/take.lua) against a real Redis: lanes
first with a guaranteed share for lower ones, owners in weighted round robin, every message
recorded, O(burst) whatever the backlog."""

import json
import time
import uuid

import pytest

from shared.broker.fair import FairQueue
from shared.broker.layout import DOORBELL
from shared.broker.patch import _FAIR_RESTORE, _FAIR_TAKE
from shared.jobstore import Keyspace
from tests.utils.jobs import make_job, waiting


@pytest.fixture
def queue() -> str:
    return f"fair-{uuid.uuid4().hex[:8]}"  # the Redis is the session's: a queue of its own


def take(client, room: int, queue: str) -> list[dict]:
    """One burst, as a worker whose BRPOP took the doorbell."""
    assert client.rpop(queue) in (DOORBELL, None)
    fair = FairQueue(queue)
    taken = _FAIR_TAKE(client, fair.take_keys("unacked_index", "unacked"), fair.take_args(time.time(), room, DOORBELL))
    return [json.loads(raw) for raw in taken]


def owners(messages: list[dict]) -> list[str]:
    return [m["properties"]["qi_owner"] for m in messages]


def lanes(messages: list[dict]) -> list[str]:
    return [m["properties"]["qi_lane"] for m in messages]


def test_owners_take_turns_so_one_job_waits_behind_one_turn_not_the_flood(store, redis_server, queue):
    client = redis_server.client()
    flood = [make_job(store, queue=queue, owner="a") for _ in range(200)]
    single = make_job(store, queue=queue, owner="b")
    assert client.lrange(queue, 0, -1) == [DOORBELL], "the Celery list holds one doorbell"
    burst = take(client, 8, queue)
    assert owners(burst) == ["a", "b", "a", "a", "a", "a", "a", "a"]
    assert [m["headers"]["id"] for m in burst[:2]] == [flood[0].id, single.id], "oldest first per owner"
    # Every message taken is recorded as kombu records a delivered one, and held.
    tags = {m["properties"]["delivery_tag"] for m in burst}
    assert set(client.hkeys("unacked")) >= tags
    assert client.smembers(Keyspace().held(queue)) == tags
    assert waiting(client, queue) == 201 - 8
    assert client.lrange(queue, 0, -1) == [DOORBELL], "rung again for the next worker"


def test_weights_share_picks_in_proportion(store, redis_server, queue):
    client = redis_server.client()
    for _ in range(40):
        make_job(store, queue=queue, owner="heavy", weight=3)
        make_job(store, queue=queue, owner="light", weight=1)
    burst = take(client, 32, queue)
    assert (owners(burst).count("heavy"), owners(burst).count("light")) == (24, 8)
    assert owners(burst)[:8] == ["heavy"] * 3 + ["light"] + ["heavy"] * 3 + ["light"]


def test_higher_lanes_first_and_each_lower_lane_keeps_one_pick_in_16(store, redis_server, queue):
    client = redis_server.client()
    for lane in ("low", "normal", "high"):
        for _ in range(100):
            make_job(store, queue=queue, owner="x", lane=lane)
    burst = take(client, 64, queue)
    assert [lanes(burst).count(lane) for lane in ("high", "normal", "low")] == [56, 4, 4]
    # A high flood and a low lane: the low lane still moves, 1 pick in 16.
    client.delete(*client.keys(f"*fair:{queue}:normal*"))
    client.hset(Keyspace().fair_state(queue), "depth:normal", 0)
    burst = take(client, 32, queue)
    assert lanes(burst).count("low") == 2


def test_a_restored_message_is_next_in_its_owners_list(store, redis_server, queue):
    """kombu's restore (a dead worker's messages) runs lua/restore.lua in its transaction."""
    client = redis_server.client()
    jobs = [make_job(store, queue=queue, owner="a") for _ in range(3)]
    first, = take(client, 1, queue)
    assert first["headers"]["id"] == jobs[0].id
    fair = FairQueue(queue)
    keys = fair.restore_keys("normal", "a")
    client.eval(_FAIR_RESTORE, len(keys), *keys, json.dumps(first), "a", "normal", DOORBELL)
    assert [m["headers"]["id"] for m in take(client, 3, queue)] == [job.id for job in jobs]


def test_a_burst_costs_the_same_behind_100000_jobs_of_1000_owners(store, redis_server, queue):
    """O(burst): the commands a take runs (counted by Redis, scripts' own included) do not
    grow with the backlog or the owners (its time: make bench-backlog)."""
    client = redis_server.client()
    message = make_job(store, queue=queue, owner="o0").message
    fair = FairQueue(queue)

    def commands_per_take(owners: int, jobs_each: int) -> float:
        client.delete(*client.keys(f"*fair:{queue}*"))
        pipe = client.pipeline(transaction=False)
        for i in range(owners):
            pipe.lpush(Keyspace().fair_jobs(queue, "normal", f"o{i}"), *[message] * jobs_each)
            pipe.rpush(Keyspace().fair_ring(queue, "normal"), f"o{i}")
        pipe.hset(Keyspace().fair_state(queue), "depth:normal", owners * jobs_each)
        pipe.execute()
        client.config_resetstat()
        for _ in range(10):
            _FAIR_TAKE(client, fair.take_keys("unacked_index", "unacked"), fair.take_args(time.time(), 32, DOORBELL))
        calls = sum(int(v["calls"]) for v in client.info("commandstats").values())
        assert waiting(client, queue) == owners * jobs_each - 320
        return calls / 10

    # A take reads each owner's weight once: the shallow backlog has more owners than a take
    # visits (32), as the deep one has, so both pay for 32 owners a take.
    shallow, deep = commands_per_take(40, 100), commands_per_take(1000, 100)
    assert deep <= shallow * 1.05, (shallow, deep)
    assert deep < 20 * 32, "a few commands a message"

"""Fair share between keys, and priority lanes, on the inference queue.

kombu's Redis transport serves a queue as one FIFO list, so one key's 10,000 jobs would run
before another key's one. Here a fair queue's messages wait per lane and per owner instead
(Keyspace.fair_jobs), each lane with a ring of the owners that have jobs in it, and the
queue's Celery list holds only a doorbell: a worker's BRPOP wakes on it, and the take script
(lua/take.lua) picks the burst, lanes first (14 picks in 16 to the highest lane with jobs,
at least 1 in 16 to each lower one), then owners in weighted round robin, recording every
message as kombu would. What a worker holds is what it took; kombu's restores put a message
back into its owner's list (lua/restore.lua, inside kombu's transaction).

No message leaves a list but inside the script that records it (kombu's BRPOP takes only a
doorbell), so the fair queue needs no lost-message rescue; a doorbell lost to a worker that
died after its BRPOP is rung again by every worker's heartbeat (JobStore.ring).
"""

from dataclasses import dataclass
from importlib import resources

from shared.broker.layout import DOORBELL
from shared.jobstore.keys import DEFAULT_KEYSPACE, Keyspace
from shared.schemas import LANES

_LANE_NAMES = frozenset(str(lane) for lane in LANES)
SCRIPTS = {name: resources.files("shared.broker").joinpath("lua", f"{name}.lua").read_text()
           for name in ("take", "restore", "record", "take_plain")}


@dataclass(frozen=True)
class FairQueue:
    """The Redis keys of one fair queue (its Celery list is named `name`, as kombu's)."""

    name: str
    keys: Keyspace = DEFAULT_KEYSPACE

    def take_keys(self, unacked_index: str, unacked: str) -> list[str]:
        return [unacked_index, unacked, self.name, self.keys.held(self.name), self.keys.fair_state(self.name),
                self.keys.fair_weights, *(self.keys.fair_ring(self.name, lane) for lane in LANES)]

    def take_args(self, now: float, room: int, message: bytes | str) -> list:
        return [now, room, message, self.keys.fair_prefix(self.name), DOORBELL]

    def restore_keys(self, lane: str, owner: str) -> list[str]:
        return [self.keys.fair_jobs(self.name, lane, owner), self.keys.fair_ring(self.name, lane),
                self.keys.fair_state(self.name), self.name]

    @property
    def held(self) -> str:
        return self.keys.held(self.name)


def lane_and_owner(payload: dict) -> tuple[str, str] | None:
    """Where a message of a fair queue waits: (lane, owner or '-'); None for one that does
    not say (a message written before fair share: it goes back to the Celery list)."""
    properties = payload.get("properties") or {}
    lane = properties.get("qi_lane")
    if lane not in _LANE_NAMES:
        return None
    return str(lane), str(properties.get("qi_owner") or "-")

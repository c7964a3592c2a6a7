"""What keeps one key's webhooks from taking the delivery pool from the others: at most
WEBHOOK_MAX_IN_FLIGHT_PER_KEY attempts of one key under way at once (all webhook workers
together), and a circuit breaker per key and receiver (host:port) that stops attempts for
WEBHOOK_BREAKER_SECONDS after WEBHOOK_BREAKER_FAILURES failures in a row. A delivery turned
away is deferred, never waited for on a thread: its message goes back to Redis' retry
schedule a moment later (or when the breaker's cooldown ends), as the same attempt.

The state is in Redis (several webhook workers share it), per key: a sorted set of at most
WEBHOOK_MAX_IN_FLIGHT_PER_KEY entries, each with a lease (a killed worker's entry ends by
itself), and a two-field hash per receiver; both expire. Each attempt costs two O(1) script
calls (lua/webhook_gate.lua, lua/webhook_done.lua), whatever the number of keys or jobs."""

import random
import uuid
from typing import NamedTuple
from urllib.parse import urlsplit

from shared.jobstore import JobStore
from shared.settings import Settings

LEASE_MARGIN_SECONDS = 5.0  # an attempt holds its place its deadline and this at most
# A key at its limit: its delivery waits in Redis 0.5 to 1 s (jitter), doubling each time it
# is deferred again, up to BUSY_DEFER_MAX_SECONDS: a key whose attempts hang (each holds its
# place up to its deadline) does not churn its pile of deliveries through the queue.
BUSY_DEFER_SECONDS, BUSY_DEFER_MAX_SECONDS = 1.0, 10.0
FAILURE_WINDOW_SECONDS = 3600.0  # a breaker forgets failures in a row this long after the last


class Passage(NamedTuple):
    """A gate's answer: `token` to hand back when the attempt ends, or `defer` seconds."""

    owner: str | None
    receiver: str
    token: str | None
    defer: float = 0.0
    why: str = ""


def receiver_of(url: str) -> str:
    """The breaker's receiver: the URL's host:port (scheme's port when none), lower case."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return url[:300]  # the attempt refuses it anyway
    return f"{(parts.hostname or '').lower()}:{port}"


def receiver_failed(code: int | None, error: str | None) -> bool:
    """Whether an attempt's outcome counts against its receiver: no answer (timed out, refused
    connection), 429 or 5xx. A refused URL (SSRF guard) never reached it."""
    if error is not None and error.startswith("refused"):
        return False
    return code is None or code == 429 or code >= 500


class Gate:
    def __init__(self, store: JobStore, settings: Settings):
        self.store, self.settings = store, settings

    def enter(self, owner: str | None, url: str, deferred: int = 0) -> Passage:
        """Whether an attempt may start now; `deferred`: how often this delivery was deferred."""
        receiver, token = receiver_of(url), uuid.uuid4().hex
        s = self.settings
        lease = s.webhook_timeout_seconds + LEASE_MARGIN_SECONDS
        verdict, wait = self.store.webhook_gate(owner, receiver, token, lease, s.webhook_max_in_flight_per_key,
                                                s.webhook_breaker_seconds)
        if verdict == "go":
            return Passage(owner, receiver, token)
        if verdict == "open":
            # Spread over a whole cooldown: a key's pile of deliveries to an open breaker comes
            # back at the rate it was made, not all at once when the cooldown ends.
            delay = wait + random.uniform(0, s.webhook_breaker_seconds)
            return Passage(owner, receiver, None, delay, f"the circuit breaker of {receiver} is open")
        delay = random.uniform(0.5, 1.0) * min(BUSY_DEFER_MAX_SECONDS, BUSY_DEFER_SECONDS * 2 ** min(deferred, 8))
        why = f"{s.webhook_max_in_flight_per_key} attempts of this key under way"
        return Passage(owner, receiver, None, delay, why)

    def leave(self, passage: Passage, failed: bool) -> int:
        """The attempt ended; the receiver's failures in a row after it."""
        s = self.settings
        return self.store.webhook_done(passage.owner, passage.receiver, passage.token or "", failed,
                                       s.webhook_breaker_failures, s.webhook_breaker_seconds,
                                       max(FAILURE_WINDOW_SECONDS, 2 * s.webhook_breaker_seconds))

"""kombu's Redis transport, patched: many messages per round trip, and safe when Redis is full.

Receiving. kombu takes one message per BRPOP and then records it as unacknowledged with a
round trip of its own, so a worker with a backlog in Redis still sees one message at a time
(measured: batches of 1.0 from a queue of 1,000). Here, once BRPOP has returned a message,
one script (`_TAKE`) records it and takes as many more as the prefetch limit leaves room
for, recording each: a burst of up to `prefetch` messages in two round trips, and a message
is never out of the queue without its record (the record kombu restores after a crash).
Acknowledging. `QoS.ack_many` deletes the records of a whole batch in one round trip; kombu
acknowledges one message per round trip.

A full Redis. kombu's Redis transport records every message it delivers in the `unacked`
hash, so that a killed worker's messages come back, and deletes the record on acknowledgement.
Under `maxmemory` with `noeviction` Redis refuses the record, and also the deletion, which
kombu sends in a MULTI (a full Redis refuses every command queued in a MULTI); either way the
consumer stops with "Unrecoverable error: OutOfMemoryError", the popped message in its
memory only. Here:

- the record is a Lua script whose first write is a deletion: Redis refuses a script's
  memory-growing command only while the script has written nothing, so it goes through,
  adding at most what the prefetch count allows;
- the acknowledgement's deletions are pipelined without MULTI (each is allowed when full);
- the periodic restore of messages whose worker died, refused for memory, waits for its next
  sweep instead of stopping the consumer.

Finishing jobs then frees memory (shared/jobstore/lua/finish.lua compacts records).

Fair queues (shared/broker/fair.py). For a queue named in `install(fair_queues=...)` BRPOP
takes only a doorbell and the burst comes from lanes and owners (fair.take); each message a
worker holds is also in the queue's held set (the in-flight count), left by every path that
deletes its record (ack, ack_many, kombu's restores); kombu's restores put a fair message
back into its owner's list (`_do_restore_message`).

Installed by `install()` (every worker's app module calls it; the API never does). Written
against kombu 5.7.0 (shared/broker/compat.py refuses another): `_brpop_read` is kombu's own
with one addition, and tests/shared/test_broker.py fails when kombu's own differs from
KOMBU_BRPOP_READ_SHA256, the source it was copied from. Not for a transport with
`global_keyprefix` (the scripts' keys would not be prefixed): we set none.
"""

import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterable

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads
from redis.exceptions import ExecAbortError, NoScriptError, OutOfMemoryError, RedisError

from shared.broker.compat import require
from shared.broker.fair import SCRIPTS as FAIR_SCRIPTS
from shared.broker.fair import FairQueue, lane_and_owner
from shared.broker.layout import DOORBELL
from shared.jobstore.keys import DEFAULT_KEYSPACE, Keyspace

require("kombu")
log = logging.getLogger(__name__)
# sha256 of the source of kombu 5.7.0's Channel._brpop_read (from its file, as tests/shared/test_broker.py reads it).
KOMBU_BRPOP_READ_SHA256 = "c2e423dfeda85f81747d360bd741f1416c8f616323a8bd19a32bebf318ee82a4"


class _Script:
    """A Lua script sent by EVALSHA (its text only when Redis does not have it yet)."""

    def __init__(self, text: str):
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    def __call__(self, client, keys: list, args: list):
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:  # first use on this Redis, or after its restart
            return client.eval(self.text, len(keys), *keys, *args)


_RECORD = _Script(FAIR_SCRIPTS["record"])  # one delivered message's record (lua/record.lua)
_TAKE = _Script(FAIR_SCRIPTS["take_plain"])  # a plain queue's burst, recorded (lua/take_plain.lua)
_FAIR_TAKE = _Script(FAIR_SCRIPTS["take"])
_FAIR_RESTORE = FAIR_SCRIPTS["restore"]  # sent by EVAL inside kombu's MULTI (no NOSCRIPT there)
_fair: dict[str, FairQueue] = {}  # queue name -> its keys; set by install()


class QoS(kombu_redis.QoS):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._recorded: set[str] = set()  # taken by _TAKE, which wrote their records
        self._settled: set[str] = set()  # records deleted by ack_many

    def append(self, message, delivery_tag):
        if delivery_tag in self._recorded:
            self._recorded.discard(delivery_tag)
        else:
            delivery = message.delivery_info
            record = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
            with self.channel.conn_or_acquire() as client:
                _RECORD(client, [self.unacked_index_key, self.unacked_key], [delivery_tag, time.time(), record])
        virtual.QoS.append(self, message, delivery_tag)

    def take(self, queue_key: bytes, message: bytes, more_allowed: bool = True) -> list[dict]:
        """The message BRPOP took from `queue_key`, and as many more as prefetch allows (up
        to prefetch_count - delivered), all recorded as unacknowledged, oldest first. From
        a fair queue: the burst its lanes and owners give (BRPOP took a doorbell)."""
        room = self.can_consume_max_estimate()
        fair = _fair.get(bytes_to_str(queue_key))
        # Celery's pidbox replies (Flower's inspect calls) are consumed without
        # acknowledgement: recorded, they would pile up in `unacked` forever.
        record = bytes_to_str(queue_key) not in getattr(self.channel, "_qi_no_ack", ())
        with self.channel.conn_or_acquire() as client:
            if fair is not None:
                # A channel closing takes nothing (the take rings the doorbell again).
                burst = (1 if room is None else max(room, 1)) if more_allowed else 0
                taken = _FAIR_TAKE(client, fair.take_keys(self.unacked_index_key, self.unacked_key),
                                   fair.take_args(time.time(), burst, message))
            else:
                # No prefetch limit, or a channel closing (it would hand them all back): kombu's one.
                more = max(room - 1, 0) if room is not None and more_allowed else 0
                taken = _TAKE(client, [self.unacked_index_key, self.unacked_key, queue_key],
                              [time.time(), more, message, "1" if record else "0"])
        payloads = []
        for raw in taken:
            try:
                payload = loads(bytes_to_str(raw))
            except ValueError:  # what kombu's own path would fail on: not one of ours
                log.error("dropping a message that is not JSON: %.200r", raw)
                continue
            tag = _delivery_tag(payload)
            if tag is not None and record:  # recorded by the script
                self._recorded.add(tag)
            payloads.append(payload)
        return payloads

    def ack(self, delivery_tag):
        if delivery_tag in self._settled:  # its record is gone already
            self._settled.discard(delivery_tag)
            return virtual.QoS.ack(self, delivery_tag)
        return super().ack(delivery_tag)

    def ack_many(self, delivery_tags: Iterable[str]) -> None:
        """Delete the records of these messages in one round trip; their ack() then only
        settles kombu's local state. Raises RedisError (then ack() does it one by one)."""
        tags = list(delivery_tags)
        if not tags:
            return
        with self.channel.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False).zrem(self.unacked_index_key, *tags).hdel(self.unacked_key, *tags)
            for fair in _fair.values():
                pipe.srem(fair.held, *tags)
            pipe.execute()
        self._settled.update(tags)

    def _remove_from_indices(self, delivery_tag, pipe=None):
        if pipe is not None:  # part of kombu's restore transaction
            pipe = super()._remove_from_indices(delivery_tag, pipe)
        else:
            with self.channel.conn_or_acquire() as client:
                pipe = client.pipeline(transaction=False)
                pipe.zrem(self.unacked_index_key, delivery_tag).hdel(self.unacked_key, delivery_tag)
        for fair in _fair.values():
            pipe.srem(fair.held, delivery_tag)
        return pipe

    def restore_visible(self, *args, **kwargs):
        try:
            return super().restore_visible(*args, **kwargs)
        except (OutOfMemoryError, ExecAbortError):
            log.warning("Redis is full: restoring unacknowledged messages waits for the next sweep")
            return None


def _delivery_tag(payload) -> str | None:
    try:
        tag = payload["properties"]["delivery_tag"]
    except (KeyError, TypeError):
        return None
    return tag if isinstance(tag, str) else None


def _brpop_read(self, **options):
    """kombu 5.7.0's Channel._brpop_read, delivering every message QoS.take brings."""
    try:
        try:
            dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
        except self.connection_errors:
            # if there's a ConnectionError, disconnect so the next
            # iteration will reconnect automatically.
            self.client.connection.disconnect()
            raise
        if dest__item:
            key, item = dest__item
            dest = bytes_to_str(key).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            try:
                payloads = self.qos.take(key, item, more_allowed=not self._closing)
            except RedisError as exc:  # this message alone, recorded as kombu does (or not at all)
                log.warning("could not take more messages: %s", exc)
                # A doorbell delivers nothing (a heartbeat rings again: shared/broker/fair.py).
                payloads = [] if bytes_to_str(item) == DOORBELL else [loads(bytes_to_str(item))]
            for payload in payloads:
                self.connection._deliver(payload, dest)
            return True
        raise kombu_redis.Empty()
    finally:
        self._in_poll = None
        self._flush_brpop_reauth()


_kombu_do_restore_message = kombu_redis.Channel._do_restore_message
_kombu_basic_consume = kombu_redis.Channel.basic_consume


def _basic_consume(self, queue, no_ack, *args, **kwargs):
    """kombu's, remembering the queues consumed without acknowledgement (QoS.take records
    nothing for those, as kombu's own path would not)."""
    if no_ack:
        self.__dict__.setdefault("_qi_no_ack", set()).add(queue)
    return _kombu_basic_consume(self, queue, no_ack, *args, **kwargs)


def _do_restore_message(self, payload, exchange, routing_key, pipe, leftmost=False):
    """kombu's, except that a fair queue's message goes back into its owner's list (in the
    same transaction as the deletion of its record, as kombu's own push)."""
    fair = _fair.get(routing_key) if not exchange else None
    where = lane_and_owner(payload) if fair is not None else None
    if fair is None or where is None:
        return _kombu_do_restore_message(self, payload, exchange, routing_key, pipe, leftmost)
    try:
        payload["headers"]["redelivered"] = True
        payload["properties"]["delivery_info"]["redelivered"] = True
    except KeyError:
        pass
    lane, owner = where
    keys = fair.restore_keys(lane, owner)
    pipe.eval(_FAIR_RESTORE, len(keys), *keys, dumps(payload), owner, lane, DOORBELL)
    return None


def install(fair_queues: Iterable[str] = (), keys: Keyspace = DEFAULT_KEYSPACE) -> None:
    """Patch kombu's Redis channel (idempotent): bulk receive, safe when Redis is full, and
    `fair_queues` served by lane and owner. Every process that consumes from the Redis
    installs it with the same fair queues: any consumer's restore sweep may restore any
    queue's message."""
    _fair.clear()
    _fair.update({name: FairQueue(name, keys) for name in fair_queues})
    kombu_redis.Channel.QoS = QoS
    kombu_redis.Channel._brpop_read = _brpop_read  # type: ignore[method-assign]
    kombu_redis.Channel._do_restore_message = _do_restore_message  # type: ignore[method-assign]
    kombu_redis.Channel.basic_consume = _basic_consume  # type: ignore[method-assign]


def acknowledge(requests) -> None:
    """Acknowledge a batch's messages (Celery requests): one round trip per channel (kombu
    takes one per message), then Celery's and kombu's local bookkeeping. Messages of a
    channel closed meanwhile (a reconnect) are left alone: kombu put them back when it
    closed it."""
    open_requests = [r for r in requests
                     if not getattr(r.message.channel, "closed", False) and r.message.channel.connection is not None]
    tags = defaultdict(list)
    for request in open_requests:
        tags[request.message.channel.qos].append(request.message.delivery_tag)
    for qos, delivery_tags in tags.items():
        try:
            qos.ack_many(delivery_tags)
        except RedisError as exc:  # each ack then tries on its own, and logs its failure
            log.warning("could not acknowledge a batch at once: %s", exc)
    for request in open_requests:
        request.acknowledge()


def hand_back(requests) -> None:
    """Put a batch's messages back into their queue instead of acknowledging them
    (REDIS_MIN_REPLICAS_ACKED: their finish was not confirmed on the replicas). A redelivery
    finds each job finished and is acknowledged then. Messages of a closed channel are left
    alone (kombu put them back when it closed it)."""
    for request in requests:
        if getattr(request.message.channel, "closed", False) or request.message.channel.connection is None:
            continue
        try:
            request.reject(requeue=True)
        except RedisError as exc:  # still recorded as unacknowledged: redelivered after the visibility timeout
            log.warning("could not hand back a message: %s", exc)

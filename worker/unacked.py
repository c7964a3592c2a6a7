"""kombu's record of delivered messages, made to go on when Redis is full.

kombu's Redis transport records every message it delivers in the `unacked` hash, so that a
killed worker's messages come back, and deletes the record on acknowledgement. Under
`maxmemory` with `noeviction` Redis refuses the record, and also the deletion, which kombu
sends in a MULTI (a full Redis refuses every command queued in a MULTI); either way the
consumer stops with "Unrecoverable error: OutOfMemoryError", the popped message in its
memory only. Here:

- the record is one Lua script whose first write is a deletion: Redis refuses a script's
  memory-growing command only while the script has written nothing, so it goes through,
  adding at most what the prefetch count allows;
- the acknowledgement's deletions are pipelined without MULTI (each is allowed when full);
- the periodic restore of messages whose worker died, refused for memory, waits for its next
  sweep instead of stopping the consumer.

Finishing jobs then frees memory (shared/jobstore/lua/finish.lua compacts records).

Installed by importing this module (worker.app and worker.webhooks do). Not for a
transport with `global_keyprefix` (the script's keys would not be prefixed): we set none.
"""

import hashlib
import logging
import time

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps
from redis.exceptions import ExecAbortError, NoScriptError, OutOfMemoryError

log = logging.getLogger(__name__)

_RECORD = """
redis.call('ZREM', KEYS[1], ARGV[1])  -- a deletion first (a no-op): see worker/unacked.py
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
"""
_RECORD_SHA = hashlib.sha1(_RECORD.encode()).hexdigest()  # sent per message, not the script


class QoS(kombu_redis.QoS):
    def append(self, message, delivery_tag):
        delivery = message.delivery_info
        record = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        args = (2, self.unacked_index_key, self.unacked_key, delivery_tag, time.time(), record)
        with self.channel.conn_or_acquire() as client:
            try:
                client.evalsha(_RECORD_SHA, *args)
            except NoScriptError:  # first use on this Redis, or after its restart
                client.eval(_RECORD, *args)
        virtual.QoS.append(self, message, delivery_tag)

    def _remove_from_indices(self, delivery_tag, pipe=None):
        if pipe is not None:  # part of kombu's restore transaction
            return super()._remove_from_indices(delivery_tag, pipe)
        with self.channel.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)
            return pipe.zrem(self.unacked_index_key, delivery_tag).hdel(self.unacked_key, delivery_tag)

    def restore_visible(self, *args, **kwargs):
        try:
            return super().restore_visible(*args, **kwargs)
        except (OutOfMemoryError, ExecAbortError):
            log.warning("Redis is full: restoring unacknowledged messages waits for the next sweep")
            return None


kombu_redis.Channel.QoS = QoS

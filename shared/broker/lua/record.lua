-- record: one delivered message's record, as kombu writes it (the index scores it by
-- delivery time). KEYS: the unacked index, the unacked hash. ARGV: the delivery tag, now,
-- the record's text.
redis.call('ZREM', KEYS[1], ARGV[1])  -- a deletion first (a no-op): see shared/broker/patch.py
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])

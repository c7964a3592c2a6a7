-- restore: put a delivered fair-queue message back where it waited, next in its owner's
-- list (kombu restores a message whose worker died or whose channel closed; run inside
-- kombu's own MULTI, which also deletes the record, so both or neither happen).
--
-- KEYS: the owner's list in the message's lane, the lane's ring, the fair state, the
--       Celery list (the doorbell).
-- ARGV: the message, the owner ('-' for none), the lane, the doorbell.
if redis.call('RPUSH', KEYS[1], ARGV[1]) == 1 then redis.call('RPUSH', KEYS[2], ARGV[2]) end
redis.call('HINCRBY', KEYS[3], 'depth:' .. ARGV[3], 1)
if redis.call('LLEN', KEYS[4]) == 0 then redis.call('LPUSH', KEYS[4], ARGV[4]) end

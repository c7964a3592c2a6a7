-- backlog: jobs waiting in the queue, and delivered to a worker but not yet acknowledged.
--
-- KEYS[1]  the Celery queue (list)
-- KEYS[2]  kombu's unacknowledged messages (hash, shared by every queue)
--
-- Returns {queued, in flight}.
return {redis.call('LLEN', KEYS[1]), redis.call('HLEN', KEYS[2])}

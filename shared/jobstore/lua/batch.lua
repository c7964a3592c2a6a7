-- batch: a batch's record, every job's status and a page of its jobs, for GET /batches/{id}.
-- The caller read the record first (for its job ids and owner; neither ever changes).
--
-- KEYS[1]       the batch's record (string: JSON with owner, created_at, jobs)
-- KEYS[1 + i]   the record of the batch's job i
-- ARGV[1]       the page's offset (0-based)
-- ARGV[2]       the page's size
-- ARGV[3..]     record fields to return for each job of the page
--
-- Returns false when the batch is gone, else {record, {status of job 1 or '' when its
-- record is gone, ...}, {fields of page job 1, ...}}.
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local statuses, page = {}, {}
for i = 2, #KEYS do
  statuses[i - 1] = redis.call('HGET', KEYS[i], 'status') or ''
end
local first, size = tonumber(ARGV[1]) + 1, tonumber(ARGV[2])
for i = first, math.min(#KEYS - 1, first + size - 1) do
  page[#page + 1] = redis.call('HMGET', KEYS[1 + i], unpack(ARGV, 3))
end
return {raw, statuses, page}

-- batch: a batch's record, every job's status and a page of its jobs, for GET /batches/{id}.
--
-- KEYS[1]  the batch's record (string: JSON with owner, created_at, jobs)
-- ARGV[1]  the caller's key id ('' reads any owner's)
-- ARGV[2]  the job key prefix
-- ARGV[3]  the page's offset (0-based)
-- ARGV[4]  the page's size
-- ARGV[5..] record fields to return for each job of the page
--
-- Returns false when the batch is gone or another owner's, else {record, {status of job 1
-- or '' when its record is gone, ...}, {fields of page job 1, ...}}.
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local batch = cjson.decode(raw)
if ARGV[1] ~= '' and batch.owner ~= ARGV[1] then return false end
local statuses, page = {}, {}
for i, id in ipairs(batch.jobs) do
  statuses[i] = redis.call('HGET', ARGV[2] .. id, 'status') or ''
end
local first, size = tonumber(ARGV[3]) + 1, tonumber(ARGV[4])
for i = first, math.min(#batch.jobs, first + size - 1) do
  page[#page + 1] = redis.call('HMGET', ARGV[2] .. batch.jobs[i], unpack(ARGV, 5))
end
return {raw, statuses, page}

-- recent: a page of jobs, newest first, for GET /jobs. The caller read the entries to
-- examine from the listing index (newest first, at most a bounded number: that bounds the
-- script's time) and passes their records.
--
-- KEYS[i]   the record of entry i
-- ARGV[1]   page size
-- ARGV[2]   keep only jobs with this status ('' keeps all)
-- ARGV[3..] record fields to return, 'status' first
--
-- Returns {the number of entries examined when the page filled up, or 0, fields of job 1,
-- fields of job 2, ...}. Ids whose record expired are skipped.
local page, limit = {0}, tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local fields = redis.call('HMGET', key, unpack(ARGV, 3))
  local status = fields[1]
  if status and (ARGV[2] == '' or status == ARGV[2]) then
    page[#page + 1] = fields
    if #page - 1 == limit then
      page[1] = i
      return page
    end
  end
end
return page

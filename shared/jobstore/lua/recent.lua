-- recent: a page of jobs, newest first, for GET /jobs.
--
-- KEYS[1]  the listing index (sorted set: job id -> created_at)
-- ARGV[1]  the job key prefix
-- ARGV[2]  exclusive upper bound on created_at: '(<score>', or '+inf' for the first page
-- ARGV[3]  page size
-- ARGV[4]  most index entries to examine (bounds the script's time)
-- ARGV[5]  keep only jobs with this status ('' keeps all)
-- ARGV[6..] record fields to return, 'status' first
--
-- Returns {next cursor (a score) or false, fields of job 1, fields of job 2, ...}. Ids whose
-- record expired are skipped. The cursor is the score of the last job returned when the page
-- is full, else of the last entry examined when more may follow, else false.
local entries = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[2], '-inf', 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[4]))
local page, limit, cursor = {false}, tonumber(ARGV[3]), false
for i = 1, #entries, 2 do
  cursor = entries[i + 1]
  local fields = redis.call('HMGET', ARGV[1] .. entries[i], unpack(ARGV, 6))
  local status = fields[1]
  if status and (ARGV[5] == '' or status == ARGV[5]) then
    page[#page + 1] = fields
    if #page - 1 == limit then
      page[1] = cursor
      return page
    end
  end
end
if #entries / 2 == tonumber(ARGV[4]) then page[1] = cursor end
return page

-- rate: one API key's submissions per period, as GCRA (a token bucket kept as one time).
--
-- The state is the "theoretical arrival time" (TAT): when the bucket would be full again.
-- Each submission moves it on by period / limit; a request is allowed while the TAT stays
-- within one period of now, so a key may send `limit` at once, then `limit` per period.
--
-- KEYS[1]  the key's state (string: TAT, Unix seconds)
-- ARGV[1]  limit: submissions per period
-- ARGV[2]  period in seconds
-- ARGV[3]  cost: submissions in this request (a batch counts every file)
--
-- Returns {allowed (1 or 0), seconds until it would be allowed (0 when allowed),
-- submissions left now, seconds until the bucket is full}, numbers as strings. A refused
-- request changes nothing.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit, period, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local interval = period / limit
local tat = math.max(tonumber(redis.call('GET', KEYS[1])) or now, now)
local new_tat = tat + cost * interval
local allowed_at = new_tat - period
local function left(at) return math.max(0, math.floor((period - (at - now)) / interval + 1e-9)) end
if allowed_at > now then
  return {'0', string.format('%.3f', allowed_at - now), tostring(left(tat)), string.format('%.3f', tat - now)}
end
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1)
return {'1', '0', tostring(left(new_tat)), string.format('%.3f', new_tat - now)}

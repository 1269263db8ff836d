-- GCRA rate limit shared by every order-service replica (one clock: Redis TIME).
-- KEYS[1] the limited key; ARGV[1] emission interval (µs per request);
-- ARGV[2] burst (requests). Returns 0 when allowed, else the µs to wait.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - now - tolerance
if wait > 0 then return wait end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0

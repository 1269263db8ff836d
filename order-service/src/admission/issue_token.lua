-- A one-time order token for one buyer and one product. KEYS: ready marker,
-- sale hash, users hash, the token's key, then the shared rate limits' keys
-- (none, one or two). ARGV: user_id, now (ms), ttl (ms), the token's value
-- (`user:product`), then each rate limit's (interval µs, burst).
-- Returns {code, n}: 1 issued (n = stock left), -1 sold out, -2 per-user limit
-- reached, -3 admission state missing or the sale closed for its rebuild,
-- -4 not on sale, -5 not started (n = ms until the start), -6 ended, -8 over
-- a rate limit (n = µs to wait; checked first, so it counts every request).
-- (rate_gate.lua and sale_gate.lua are prepended.)
local wait = rate_gate(5, 5)
if wait > 0 then return {-8, wait} end
local refused, sale = sale_gate(KEYS[1], KEYS[2], tonumber(ARGV[2]))
if refused then return refused end
local stock = tonumber(sale[1])
if stock <= 0 then return {-1, stock} end
local held = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if held >= tonumber(sale[2] or '1') then return {-2, stock} end
redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[3])
return {1, stock}

-- A one-time order token for one buyer and one product. KEYS: ready marker,
-- sale hash, users hash, the token's key. ARGV: user_id, now (ms), ttl (ms),
-- the token's value (`user:product`).
-- Returns {code, n}: 1 issued (n = stock left), -1 sold out, -2 per-user limit
-- reached, -3 admission state missing or the sale closed for its rebuild,
-- -4 not on sale, -5 not started (n = ms until the start), -6 ended.
if redis.call('EXISTS', KEYS[1]) == 0 then return {-3, 0} end
local sale = redis.call('HMGET', KEYS[2], 'stock', 'limit', 'rebuilding', 'starts_at', 'ends_at')
if sale[3] then return {-3, 0} end
if not sale[1] then return {-4, 0} end
local now = tonumber(ARGV[2])
if sale[4] and now < tonumber(sale[4]) then return {-5, tonumber(sale[4]) - now} end
if sale[5] and now >= tonumber(sale[5]) then return {-6, 0} end
local stock = tonumber(sale[1])
if stock <= 0 then return {-1, stock} end
local held = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if held >= tonumber(sale[2] or '1') then return {-2, stock} end
redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[3])
return {1, stock}

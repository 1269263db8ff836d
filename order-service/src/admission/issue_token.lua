-- A one-time order token for one buyer and one product. KEYS: ready marker,
-- sale hash, users hash, the token's key. ARGV: user_id, now (ms), ttl (ms),
-- the token's value (`user:product`).
-- Returns {code, n}: 1 issued (n = stock left), -1 sold out, -2 per-user limit
-- reached, -3 admission state missing or the sale closed for its rebuild,
-- -4 not on sale, -5 not started (n = ms until the start), -6 ended.
-- (sale_gate.lua is prepended: the sale's window and state.)
local refused, sale = sale_gate(KEYS[1], KEYS[2], tonumber(ARGV[2]))
if refused then return refused end
local stock = tonumber(sale[1])
if stock <= 0 then return {-1, stock} end
local held = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if held >= tonumber(sale[2] or '1') then return {-2, stock} end
redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[3])
return {1, stock}

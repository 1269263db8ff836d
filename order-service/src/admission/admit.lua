-- Admission of one order, atomically. KEYS: ready marker, sale hash, users
-- hash, reservations hash, the order token's key, then the shared rate
-- limits' keys (none, one or two). ARGV: user_id, count,
-- tx_no, now (ms since the epoch, the caller's clock), the token's expected
-- value (`user:product`; empty: no token to check), the tx_no of a rolled-back
-- attempt of the same Idempotency-Key this order replaces (empty: none),
-- then each rate limit's (interval µs, burst).
-- Returns {code, stock}: code 1 admitted (stock = what is left), 0 already
-- admitted under this tx_no, -1 sold out, -2 per-user limit reached,
-- -3 admission state missing (Redis lost it) or this sale closed while it is
-- rebuilt, -4 product not on sale, -5 not started yet (stock = ms until the
-- start), -6 ended, -7 the order token is missing, expired, used or
-- another's, -8 over a rate limit (stock = µs to wait; checked first, so it
-- counts every request). The sale hash's `starts_at`/`ends_at` (ms) bound it. The token
-- is checked after the stock and the buyer's limit, and used up only by an
-- admission: a refused order leaves it good, so the keyed retry of a SOLD_OUT
-- answer is told SOLD_OUT again on whichever replica it reaches (found by the
-- chaos suite against two replicas: it was told ORDER_TOKEN_INVALID). Used up,
-- its value becomes `used:<user:product>:<tx_no>` until it expires, so that
-- the keyed retry of an attempt that turned out rolled back takes the same
-- token even before that attempt has restored it.
-- A reservation is `user:count:reserved_at_ms`: the sweeper finds ones whose
-- process died before its half message by their age.
-- (rate_gate.lua and sale_gate.lua are prepended.)
local wait = rate_gate(6, 7)
if wait > 0 then return {-8, wait} end
local refused, sale = sale_gate(KEYS[1], KEYS[2], tonumber(ARGV[4]))
if refused then return refused end
local stock = tonumber(sale[1])
if redis.call('HEXISTS', KEYS[4], ARGV[3]) == 1 then return {0, stock} end
local count = tonumber(ARGV[2])
if stock < count then return {-1, stock} end
local limit = tonumber(sale[2] or '1')
local held = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if held >= limit then return {-2, stock} end
if ARGV[5] ~= '' then
  local token = redis.call('GET', KEYS[5])
  if token ~= ARGV[5] and (ARGV[6] == '' or token ~= 'used:' .. ARGV[5] .. ':' .. ARGV[6]) then
    return {-7, 0}
  end
  redis.call('SET', KEYS[5], 'used:' .. ARGV[5] .. ':' .. ARGV[3], 'KEEPTTL')
end
redis.call('HINCRBY', KEYS[2], 'stock', -count)
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
redis.call('HSET', KEYS[4], ARGV[3], ARGV[1] .. ':' .. ARGV[2] .. ':' .. ARGV[4])
return {1, stock - count}

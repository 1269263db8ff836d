-- Returns the reservation of one tx_no, at most once. KEYS: sale hash, users
-- hash, reservations hash, restock channel. ARGV: tx_no, product_id.
-- A reservation is `user:count` or `user:count:reserved_at_ms`.
-- Returns the count given back (0 when there was no such reservation).
local held = redis.call('HGET', KEYS[3], ARGV[1])
if not held then return 0 end
local sep = string.find(held, ':', 1, true)
local user = string.sub(held, 1, sep - 1)
local rest = string.sub(held, sep + 1)
local sep2 = string.find(rest, ':', 1, true)
local count = tonumber(sep2 and string.sub(rest, 1, sep2 - 1) or rest)
redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'stock', count)
end
if redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
  redis.call('HDEL', KEYS[2], user)
end
redis.call('PUBLISH', KEYS[4], ARGV[2])
return count

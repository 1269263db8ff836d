-- Adds the reservation of an order that committed while its sale was being
-- rebuilt (admitted before the rebuild closed the sale), once. KEYS: sale
-- hash, users hash, reservations hash. ARGV: tx_no, user_id, count, reserved_at_ms.
-- Returns 1 when added, 0 when it was there already.
if redis.call('HSETNX', KEYS[3], ARGV[1], ARGV[2] .. ':' .. ARGV[3] .. ':' .. ARGV[4]) == 0 then
  return 0
end
redis.call('HINCRBY', KEYS[1], 'stock', -tonumber(ARGV[3]))
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
return 1

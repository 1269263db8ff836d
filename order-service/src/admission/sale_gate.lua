-- Prepended to admit.lua and issue_token.lua: whether a sale takes orders
-- at `now` (ms). Returns a refusal {code, n} — -3 admission state missing
-- (Redis lost it) or the sale closed while it is rebuilt, -4 not on sale,
-- -5 not started (n = ms until the start), -6 ended — or nil and the sale's
-- fields {stock, limit, rebuilding, starts_at, ends_at}.
local function sale_gate(ready_key, sale_key, now)
  if redis.call('EXISTS', ready_key) == 0 then return {-3, 0} end
  local sale = redis.call('HMGET', sale_key, 'stock', 'limit', 'rebuilding', 'starts_at', 'ends_at')
  if sale[3] then return {-3, 0} end
  if not sale[1] then return {-4, 0} end
  if sale[4] and now < tonumber(sale[4]) then return {-5, tonumber(sale[4]) - now} end
  if sale[5] and now >= tonumber(sale[5]) then return {-6, 0} end
  return nil, sale
end


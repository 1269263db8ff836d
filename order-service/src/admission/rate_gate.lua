-- Prepended to admit.lua and issue_token.lua, so a request's shared rate
-- limit costs no round trip of its own (and run alone, see rate_limit.rs):
-- GCRA limits shared by every order-service replica, on one clock (Redis
-- TIME). KEYS[first_key..] the limited keys, ARGV[first_arg..] one pair
-- (emission interval in µs per request, burst in requests) per key; no such
-- key: no limit. All or nothing: when any key is over its limit, nothing is
-- counted and the longest wait (µs) is returned; else the request is counted
-- against every key and 0 returned.
local function rate_gate(first_key, first_arg)
  if not KEYS[first_key] then return 0 end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local wait, tats = 0, {}
  local k, a = first_key, first_arg
  while KEYS[k] do
    local interval = tonumber(ARGV[a])
    local tat = tonumber(redis.call('GET', KEYS[k]) or now)
    if tat < now then tat = now end
    local new_tat = tat + interval
    local over = new_tat - now - interval * tonumber(ARGV[a + 1])
    if over > wait then wait = over end
    tats[#tats + 1] = new_tat
    k, a = k + 1, a + 2
  end
  if wait > 0 then return wait end
  for i, new_tat in ipairs(tats) do
    redis.call('SET', KEYS[first_key + i - 1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
  end
  return 0
end


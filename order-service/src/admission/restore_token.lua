-- Makes a used-up order token good again. KEYS: the token's key. ARGV: the
-- value it was used up with (`used:<user:product>:<tx_no>`), its good value
-- (`user:product`), ttl (ms). Restored only when still used up by that
-- tx_no, or gone (Redis lost it); a token a retry has taken since stays used.
local token = redis.call('GET', KEYS[1])
if token == ARGV[1] or not token then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 0

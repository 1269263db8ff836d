-- wrk script of `seckill-bench sold-out-flood --client wrk`: POST with no
-- body, a different buyer's bearer token each request (read from the file
-- named by SECKILL_WRK_TOKENS, one per line, minted before the run), as a
-- buyer's client asks for an order token.
local tokens = {}
local next_token = 1

function init(args)
  local file = assert(io.open(os.getenv("SECKILL_WRK_TOKENS"), "r"))
  for line in file:lines() do
    tokens[#tokens + 1] = line
  end
  file:close()
  -- Each wrk thread starts at its own place in the list.
  next_token = (math.random(#tokens))
end

function request()
  local token = tokens[next_token]
  next_token = next_token % #tokens + 1
  return wrk.format("POST", nil, { ["Authorization"] = "Bearer " .. token }, nil)
end

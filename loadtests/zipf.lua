-- wrk script: GET /z<rank> where rank follows a Zipf law (exponent ZIPF_S) over ZIPF_N codes; a share
-- UNKNOWN_SHARE of the requests asks for slugs that exist nowhere, each one distinct.
local n = tonumber(os.getenv("ZIPF_N") or "1000000")
local s = tonumber(os.getenv("ZIPF_S") or "1.1")
local unknown = tonumber(os.getenv("UNKNOWN_SHARE") or "0")
local run = os.getenv("RUN_ID") or "0"
local cdf = {}
local counter = 0
local id = 0

setup = function(thread)
  id = id + 1
  thread:set("id", id)
end

init = function(args)
  local sum = 0
  for i = 1, n do
    sum = sum + 1 / i ^ s
    cdf[i] = sum
  end
  for i = 1, n do cdf[i] = cdf[i] / sum end
  math.randomseed(tonumber(os.getenv("ZIPF_SEED") or "7"))
end

request = function()
  if unknown > 0 and math.random() < unknown then
    counter = counter + 1
    return wrk.format("GET", "/u" .. run .. "-" .. (id or 0) .. "-" .. counter .. "?qr=1")
  end
  local u, lo, hi = math.random(), 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return wrk.format("GET", "/z" .. lo .. "?qr=1&utm_source=bench")
end

-- wrk script: GET /z<rank> where rank follows a Zipf law (exponent ZIPF_S) over ZIPF_N codes.
local n = tonumber(os.getenv("ZIPF_N") or "1000000")
local s = tonumber(os.getenv("ZIPF_S") or "0.99")
local cdf = {}

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
  local u, lo, hi = math.random(), 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return wrk.format("GET", "/z" .. lo .. "?qr=1&utm_source=bench")
end

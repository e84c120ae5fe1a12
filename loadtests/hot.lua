-- wrk script: one hot code /<HOT_PREFIX>1 (or HOT_N round robin; prefix "h") with a visitor query to merge
-- and a phone's headers.
local n = tonumber(os.getenv("HOT_N") or "1")
local prefix = os.getenv("HOT_PREFIX") or "h"
local i = 0
local headers = {}

init = function(args)
  for k, v in pairs(wrk.headers) do headers[k] = v end
  headers["User-Agent"] = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15"
    .. " (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
  headers["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
  headers["Accept-Language"] = "de-DE,de;q=0.9,en;q=0.8"
  headers["Accept-Encoding"] = "gzip, deflate, br"
end

request = function()
  i = i % n + 1
  return wrk.format("GET", "/" .. prefix .. i .. "?qr=1&utm_source=bench&utm_content=tbl", headers)
end

-- wrk script: GET /<HOT_PREFIX><1..HOT_N> round robin (prefix "h"), with a visitor query to merge.
local n = tonumber(os.getenv("HOT_N") or "100")
local prefix = os.getenv("HOT_PREFIX") or "h"
local i = 0

request = function()
  i = i % n + 1
  return wrk.format("GET", "/" .. prefix .. i .. "?qr=1&utm_source=bench&utm_content=tbl")
end

-- wrk script: GET /h<1..HOT_N> round robin, with a visitor query to merge.
local n = tonumber(os.getenv("HOT_N") or "100")
local i = 0

request = function()
  i = i % n + 1
  return wrk.format("GET", "/h" .. i .. "?qr=1&utm_source=bench&utm_content=tbl")
end

-- wrk script: distinct unknown slugs, each on one of 4096 hosts of about 200 bytes (valid host names),
-- to show that the edge's memory stays bounded by its cache size.
local run = os.getenv("RUN_ID") or "0"
local counter = 0
local label = string.rep("a", 60)
local base = label .. "." .. string.rep("b", 60) .. "." .. string.rep("c", 60) .. ".h"

request = function()
  counter = counter + 1
  return wrk.format("GET", "/f" .. run .. "-" .. counter, {["Host"] = base .. (counter % 4096) .. ".test"})
end

"""The edge registry both sides agree on (docs/freshness.md): which edge processes are alive, and which
invalidation-stream position each has applied.

An edge confirms with `CONFIRM` after every read of the stream (that is its heartbeat too); a write asks
`LAGGING` which live edges have not yet applied its invalidation. Both scripts take Redis's own clock,
so no two machines' clocks are ever compared.
"""

from __future__ import annotations

# KEYS: positions hash, leases sorted set. ARGV: edge id, applied stream id, lease in ms.
CONFIRM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
return now
"""

# KEYS: positions hash, leases sorted set. ARGV: the stream id every live edge must have applied.
# Drops edges whose lease ended (dead); returns the ids of live edges that are behind.
LAGGING = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. now, 'LIMIT', 0, 1000)
if #dead > 0 then
  redis.call('ZREM', KEYS[2], unpack(dead))
  redis.call('HDEL', KEYS[1], unpack(dead))
end
local tms, tseq = string.match(ARGV[1], '^(%d+)-(%d+)$')
tms, tseq = tonumber(tms), tonumber(tseq)
local lagging = {}
for _, edge in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local behind = true
  local applied = redis.call('HGET', KEYS[1], edge)
  if applied then
    local ms, seq = string.match(applied, '^(%d+)-(%d+)$')
    if ms then
      ms, seq = tonumber(ms), tonumber(seq)
      behind = ms < tms or (ms == tms and seq < tseq)
    end
  end
  if behind then
    lagging[#lagging + 1] = edge
  end
end
return lagging
"""


def stream_id(value: bytes | str) -> tuple[int, int]:
    """A Redis stream id as a comparable pair (ms, sequence)."""
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)

"""The membership filter of existing codes: a Bloom filter of every (domain, slug) that has a code, kept in
Redis by the control plane and copied by every edge process (docs/freshness.md, "The filter of existing
codes"). A slug the filter says does not exist is answered 404 without any read; a false positive only
costs the ordinary lookup.

One Redis string holds it all, so one GET gives an edge a consistent copy:

    bytes 0-3   b"SRBF"
    byte  4     format (1)
    byte  5     k, the number of bit positions per key
    bytes 6-7   zero
    bytes 8-11  m, the number of bits (big-endian)
    bytes 12-15 generation (big-endian): a new number for every rebuild
    bytes 16-   the bits; bit p is bit (7 - p % 8) of byte 16 + p // 8, as Redis's SETBIT counts them

A key's positions are `(h1 + i * h2) % m` for i < k, with h1 and h2 the low and high 32 bits of the xxh3-64
hash of the key's text `{len(domain)}:{domain}:{slug}` (the unambiguous form of shared.keys). The control
plane sets them in Lua (`ADD`), from the header it finds, so a writer never needs to know the size; the
numbers stay below 2^37, exact in Lua's doubles.

Every write of codes names their bits to the edges in its invalidation entry (a delta: the generation and
size of the filter it set them in, and the keys' hashes), so that an edge sets them in its own copy instead of
loading the whole filter again (`encode_delta`, `FilterCopy.add`; docs/freshness.md says when an edge may not).
It names them whether or not Redis's filter already had them: bits set by an earlier attempt of the same write,
or by another code, may still be missing from an edge's copy.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable

import xxhash

MAGIC = b"SRBF"
FORMAT = 1
HEADER = struct.Struct(">4sBBxxII")
HEADER_BYTES = HEADER.size  # 16
HEADER_BITS = HEADER_BYTES * 8
FALSE_POSITIVES = 0.01  # at capacity
K = 7  # round(log2(1 / FALSE_POSITIVES))
BITS_PER_KEY = -math.log(FALSE_POSITIVES) / math.log(2) ** 2  # 9.59
MIN_CAPACITY = 100_000  # keys: 117 KiB
GROWTH = 2  # a rebuild sizes the filter for this many times the codes that exist
# Share of bits set past which the filter holds more keys than it was sized for (k = 7 at capacity: 0.52):
# the cache sync then rebuilds it twice as large, a new generation.
FULL = 0.52

# Keys one delta names at most: a write of more (a big mint or import) makes every edge load the filter again.
# 8 bytes a key, so a delta is never larger than an entry naming as many changed keys (shared.keys).
DELTA_KEYS = 500
DELTA_HEAD = struct.Struct(">II")  # the filter's shape: generation, m
# A filter is named by its shape: (generation, m). A delta applies only to the copy of the same shape.
Shape = tuple[int, int]
DELTA_KEY = struct.Struct(">II")  # h1, h2

_hash = xxhash.xxh3_64_intdigest


def key_text(domain: str, slug: str) -> bytes:
    return f"{len(domain)}:{domain}:{slug}".encode()


def key_hashes(domain: str, slug: str) -> tuple[int, int]:
    """(h1, h2): what the ADD script needs, and where `positions` starts."""
    value = _hash(key_text(domain, slug))
    return value & 0xFFFFFFFF, value >> 32


def bits_for(capacity: int) -> int:
    return max(8, math.ceil(capacity * BITS_PER_KEY / 8) * 8)


def header(m: int, generation: int, k: int = K) -> bytes:
    return HEADER.pack(MAGIC, FORMAT, k, m, generation)


def parse_header(raw: bytes) -> tuple[int, int, int] | None:
    """(k, m, generation) of a filter's first bytes, None if they are not a filter of this format."""
    if len(raw) < HEADER_BYTES:
        return None
    magic, fmt, k, m, generation = HEADER.unpack_from(raw)
    if magic != MAGIC or fmt != FORMAT or k == 0 or m == 0:
        return None
    return k, m, generation


def empty(m: int, generation: int, k: int = K) -> bytes:
    return header(m, generation, k) + bytes(m // 8)


def encode_delta(shape: Shape, keys: Iterable[tuple[str, str]]) -> bytes:
    """What a write tells the edges it set in the filter of this shape."""
    return DELTA_HEAD.pack(*shape) + b"".join(DELTA_KEY.pack(*key_hashes(d, s)) for d, s in keys)


def decode_delta(raw: bytes) -> tuple[Shape, list[tuple[int, int]]] | None:
    """(the filter's shape, the keys' (h1, h2)), or None if `raw` is not a delta."""
    if len(raw) < DELTA_HEAD.size or (len(raw) - DELTA_HEAD.size) % DELTA_KEY.size:
        return None
    generation, m = DELTA_HEAD.unpack_from(raw)
    return (generation, m), list(DELTA_KEY.iter_unpack(raw[DELTA_HEAD.size:]))


class FilterCopy:
    """A copy of the filter (an edge's, loaded with one GET). Bits are only ever set, never cleared, by one
    thread (`add`), so a reader on another thread sees each key either present or, while its bits are being
    set, possibly absent: never a key that was present become absent."""

    __slots__ = ("bits", "generation", "k", "m", "tag")

    def __init__(self, raw: bytes, tag: int = 0) -> None:
        parsed = parse_header(raw)
        if parsed is None or len(raw) < HEADER_BYTES + parsed[1] // 8:
            raise ValueError("not a complete code filter")
        self.k, self.m, self.generation = parsed
        self.bits = bytearray(raw)  # changed in place only (no resize), so a reader never sees it reallocated
        self.tag = tag  # what the loader was told to load (edge/code_filter.py)

    def add(self, hashes: Iterable[tuple[int, int]]) -> None:
        """Set the bits of these keys (their `key_hashes`), as the ADD script set them in Redis."""
        m, bits = self.m, self.bits
        for h1, h2 in hashes:
            for i in range(self.k):
                p = (h1 + i * h2) % m + HEADER_BITS
                bits[p >> 3] |= 0x80 >> (p & 7)

    def __len__(self) -> int:
        return len(self.bits)

    def may_contain(self, domain: str, slug: str) -> bool:
        value = _hash(key_text(domain, slug))
        h1, h2, m, bits = value & 0xFFFFFFFF, value >> 32, self.m, self.bits
        for i in range(self.k):
            p = (h1 + i * h2) % m + HEADER_BITS
            if not bits[p >> 3] & (0x80 >> (p & 7)):
                return False
        return True


# KEYS: filters (the live one, and the one being rebuilt); ARGV: h1, h2 of each key. Sets the keys' bits in
# every KEYS[i] that holds a filter (a missing one is skipped: it is being rebuilt from PostgreSQL, which
# already has these codes), from the size in its own header. Returns the shape of KEYS[1], {generation, m},
# or {-1, -1} when it holds no filter.
ADD = """
local generation, size = -1, -1
for n, key in ipairs(KEYS) do
  local head = redis.call('GETRANGE', key, 0, 15)
  if #head == 16 and string.sub(head, 1, 4) == 'SRBF' and string.byte(head, 5) == 1 then
    local k = string.byte(head, 6)
    local m = ((string.byte(head, 9) * 256 + string.byte(head, 10)) * 256 + string.byte(head, 11)) * 256
      + string.byte(head, 12)
    if n == 1 then
      size = m
      generation = ((string.byte(head, 13) * 256 + string.byte(head, 14)) * 256 + string.byte(head, 15)) * 256
        + string.byte(head, 16)
    end
    local args = {}
    for i = 1, #ARGV, 2 do
      local h1, h2 = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
      for j = 0, k - 1 do
        local p = (h1 + j * h2) % m
        args[#args + 1] = 'SET'
        args[#args + 1] = 'u1'
        args[#args + 1] = 128 + p
        args[#args + 1] = 1
      end
      if #args >= 4000 then
        redis.call('BITFIELD', key, unpack(args))
        args = {}
      end
    end
    if #args > 0 then redis.call('BITFIELD', key, unpack(args)) end
  end
end
return {generation, size}
"""

# KEYS: the filter being rebuilt, the live filter. Installs the rebuilt one if it is still the one this
# rebuild started (ARGV[1]: its header); returns 1, else 0 (lost meanwhile, or replaced by another rebuild).
INSTALL = """
if redis.call('GETRANGE', KEYS[1], 0, 15) ~= ARGV[1] then
  return 0
end
redis.call('RENAME', KEYS[1], KEYS[2])
return 1
"""

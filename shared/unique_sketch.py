"""HyperLogLog sketches of visitor and IP hashes: unique counts that can be merged across hours.

Distinct counts cannot be summed, so the ingest worker keeps one sketch per code and hour in its hourly row
(`scan_hours`); analytics over many scans merge the hours of a range and estimate (standard error
1.04/√1024 ≈ 3%).
Small ranges are counted exactly from the scans instead (control_plane.services.analytics).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

PRECISION = 10
REGISTERS = 1 << PRECISION
_REST_BITS = 64 - PRECISION
_REST_MASK = (1 << _REST_BITS) - 1
_ALPHA = 0.7213 / (1 + 1.079 / REGISTERS)
_INVERSE_POWERS = [2.0 ** -rank for rank in range(_REST_BITS + 2)]
# Ranks are at most _REST_BITS + 1 = 55, below 128. With every byte's top bit set, `a - b` borrows across no
# byte, and the top bit left in each byte says a >= b: one big-integer subtraction compares all registers.
_TOP_BITS = int.from_bytes(b"\x80" * REGISTERS)


def empty() -> bytearray:
    return bytearray(REGISTERS)


def register(value: str) -> tuple[int, int]:
    """The register `value` falls in, and the rank it sets there."""
    # The edge's hashes are 32 hex digits of a keyed HMAC, uniform already: their first 64 bits will do.
    # Anything else (older events, tests) is hashed first.
    h = -1
    if len(value) == 32:
        try:
            h = int(value[:16], 16)
        except ValueError:
            pass
    if h < 0:
        h = int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big")
    return h >> _REST_BITS, _REST_BITS + 1 - (h & _REST_MASK).bit_length()


def add(registers: bytearray, value: str) -> None:
    index, rank = register(value)
    if rank > registers[index]:
        registers[index] = rank


def note(ranks: dict[int, int], value: str) -> None:
    """Adds `value` to a sparse sketch (register → rank): a batch adds a few values per code and hour, so
    carrying only the registers it touched is cheaper than a whole sketch."""
    index, rank = register(value)
    if rank > ranks.get(index, 0):
        ranks[index] = rank


def apply(registers: bytes, ranks: dict[int, int]) -> bytes:
    """`registers` with a sparse sketch added: the union of the two."""
    merged = bytearray(registers)
    for index, rank in ranks.items():
        if rank > merged[index]:
            merged[index] = rank
    return bytes(merged)


def union(sketches: Iterable[bytes | bytearray]) -> bytes:
    """Register-wise maximum of any number of sketches: a few microseconds each, whatever their ranks."""
    merged = 0
    for sketch in sketches:
        if len(sketch) != REGISTERS:
            raise ValueError(f"a sketch has {REGISTERS} registers, not {len(sketch)}")
        other = int.from_bytes(sketch)
        at_least = ((((merged | _TOP_BITS) - other) & _TOP_BITS) >> 7) * 0xFF  # 0xFF where merged >= other
        merged = other ^ ((merged ^ other) & at_least)
    return merged.to_bytes(REGISTERS)


def estimate(registers: bytes) -> int:
    raw = _ALPHA * REGISTERS * REGISTERS / sum(map(_INVERSE_POWERS.__getitem__, registers))
    zeros = registers.count(0)
    if raw <= 2.5 * REGISTERS and zeros:
        return round(REGISTERS * math.log(REGISTERS / zeros))  # linear counting: precise for small sets
    return round(raw)

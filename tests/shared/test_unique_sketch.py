from __future__ import annotations

import hashlib

from shared import unique_sketch


def sketch_of(values: range, prefix: str) -> bytes:
    registers = unique_sketch.empty()
    for n in values:
        unique_sketch.add(registers, hashlib.md5(f"{prefix}{n}".encode()).hexdigest())  # like the edge's hashes
    return bytes(registers)


def test_an_empty_sketch_counts_nothing() -> None:
    assert unique_sketch.estimate(bytes(unique_sketch.empty())) == 0
    assert unique_sketch.estimate(unique_sketch.union([])) == 0


def test_small_sets_are_counted_within_two_standard_errors() -> None:
    for size in (1, 25, 500):
        estimate = unique_sketch.estimate(sketch_of(range(size), "v"))
        assert abs(estimate - size) <= max(1, size * 0.06)


def test_the_union_counts_overlapping_visitors_once() -> None:
    monday, tuesday = sketch_of(range(0, 30_000), "v"), sketch_of(range(20_000, 50_000), "v")
    together = unique_sketch.estimate(unique_sketch.union([monday, tuesday]))
    assert abs(together - 50_000) / 50_000 < 0.05
    assert unique_sketch.union([monday, monday]) == monday

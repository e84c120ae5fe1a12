from __future__ import annotations

import hashlib
import random

from shared import unique_sketch


def sketch_of(values: range, prefix: str) -> bytes:
    registers = unique_sketch.empty()
    for n in values:
        unique_sketch.add(registers, hashlib.md5(f"{prefix}{n}".encode()).hexdigest())  # like the edge's hashes
    return bytes(registers)


def hash_in_register(index: int, rng: random.Random) -> str:
    """An edge-style hash (32 hex digits) whose first bits choose register `index`."""
    rest = rng.getrandbits(64 - unique_sketch.PRECISION)
    return f"{(index << (64 - unique_sketch.PRECISION)) | rest:016x}{rng.getrandbits(64):016x}"


def test_an_empty_sketch_counts_nothing() -> None:
    assert unique_sketch.estimate(bytes(unique_sketch.empty())) == 0
    assert unique_sketch.estimate(unique_sketch.union([])) == 0


def test_a_single_visitor_is_counted_as_one() -> None:
    for n in range(1000):
        assert unique_sketch.estimate(sketch_of(range(n, n + 1), "v")) == 1


def test_tiny_sets_in_distinct_registers_are_counted_exactly() -> None:
    # Linear counting is exact while no two values share a register, up to 31 values with 1,024 registers.
    rng = random.Random(17)
    for size in range(32):
        registers = unique_sketch.empty()
        for index in rng.sample(range(unique_sketch.REGISTERS), size):
            unique_sketch.add(registers, hash_in_register(index, rng))
        assert unique_sketch.estimate(bytes(registers)) == size


def test_a_few_visitors_are_counted_exactly() -> None:
    for size in (2, 3, 5, 10):
        assert unique_sketch.estimate(sketch_of(range(size), "v")) == size


def test_larger_sets_are_counted_within_two_standard_errors() -> None:
    for size in (500, 5_000):
        estimate = unique_sketch.estimate(sketch_of(range(size), "v"))
        assert abs(estimate - size) <= size * 0.065


def test_the_union_counts_overlapping_visitors_once() -> None:
    monday, tuesday = sketch_of(range(0, 30_000), "v"), sketch_of(range(20_000, 50_000), "v")
    together = unique_sketch.estimate(unique_sketch.union([monday, tuesday]))
    assert abs(together - 50_000) / 50_000 < 0.05
    assert unique_sketch.union([monday, monday]) == monday


def test_the_union_is_the_register_wise_maximum() -> None:
    rng = random.Random(7)
    ranks = (0, 1, 2, 30, 54, 55)  # 55 is the highest rank a register can hold
    for count in (2, 3, 8):
        sketches = [bytes(rng.choice(ranks) for _ in range(unique_sketch.REGISTERS)) for _ in range(count)]
        assert unique_sketch.union(sketches) == bytes(map(max, *sketches))
        assert unique_sketch.union(map(bytearray, sketches)) == bytes(map(max, *sketches))
    assert unique_sketch.union([bytes([55]) * unique_sketch.REGISTERS]) == bytes([55]) * unique_sketch.REGISTERS

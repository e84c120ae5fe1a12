"""The edge's collector policy (edge/heap.py): what survives a full collection is frozen out of later ones,
and a frozen cycle that dies is still freed, once the frozen objects have grown by a quarter."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from edge.heap import GROWTH, FrozenHeap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def heap() -> Iterator[FrozenHeap]:
    heap = FrozenHeap()
    heap.install()
    try:
        yield heap
    finally:
        heap.uninstall()
        gc.unfreeze()  # the rest of the test process collects as before


def test_what_survives_a_full_collection_is_out_of_the_next_ones(heap: FrozenHeap) -> None:
    before = gc.get_freeze_count()
    cached = [Node() for _ in range(10_000)]
    gc.collect()
    assert gc.get_freeze_count() >= before + len(cached)
    assert not any(node is cached[0] for node in gc.get_objects(generation=2))


def test_a_frozen_cycle_that_dies_is_freed_once_the_frozen_objects_grew_by_a_quarter(heap: FrozenHeap) -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a
    alive = weakref.ref(a)
    gc.collect()  # the cycle is reachable: frozen
    del a, b
    gc.collect()
    assert alive() is not None  # dead, but frozen: not traversed by this collection

    grown = [Node() for _ in range(heap.whole // GROWTH + 1000)]  # live objects: the frozen set grows past a quarter
    gc.collect()  # frozen again, then found grown: thawed for the next full collection
    assert heap.thawed
    gc.collect()  # traverses everything
    assert alive() is None
    assert not heap.thawed and heap.whole_collections == 1
    assert heap.whole >= len(grown)


def test_uninstalled_it_freezes_nothing_more() -> None:
    heap = FrozenHeap()
    heap.install()
    heap.uninstall()
    try:
        before = gc.get_freeze_count()
        kept = [Node() for _ in range(1000)]
        gc.collect()
        assert gc.get_freeze_count() < before + len(kept)
    finally:
        gc.unfreeze()

"""The edge's collector policy (edge/heap.py): what survives a collection is frozen out of later ones, and a
frozen cycle that dies is still freed, once the frozen objects have grown by a quarter."""

from __future__ import annotations

import gc
import re
import weakref
from collections.abc import Iterator

import httpx
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


def test_what_survives_a_young_collection_is_out_of_the_next_ones(heap: FrozenHeap) -> None:
    before = gc.get_freeze_count()
    cached = [Node() for _ in range(10_000)]
    gc.collect(0)
    assert gc.get_freeze_count() >= before + len(cached)
    assert not any(node is cached[0] for generation in range(3) for node in gc.get_objects(generation))


def test_a_frozen_cycle_that_dies_is_freed_once_the_frozen_objects_grew_by_a_quarter(heap: FrozenHeap) -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a
    alive = weakref.ref(a)
    gc.collect()  # the cycle is reachable: frozen
    del a, b
    gc.collect()
    heap.maintain()
    assert alive() is not None  # dead, but frozen, and the frozen objects have not grown: kept

    grown = [Node() for _ in range(heap.whole // GROWTH + 1000)]  # live: the frozen objects grow past a quarter
    gc.collect()
    heap.maintain()  # collects everything
    assert alive() is None
    assert heap.whole_collections == 1 and heap.whole >= len(grown)
    assert gc.get_freeze_count() == heap.whole  # the survivors are frozen again


def test_a_check_counts_the_frozen_objects_only_when_they_could_have_grown_by_a_quarter(
        heap: FrozenHeap, monkeypatch: pytest.MonkeyPatch) -> None:
    """Counting them walks every frozen object (milliseconds in an edge, every second it checked, stopping its
    scans for that long); what each collection froze bounds the growth, and is cheap to know."""
    counted = []
    count = gc.get_freeze_count
    monkeypatch.setattr(gc, "get_freeze_count", lambda: counted.append(1) or count())
    kept = [Node() for _ in range(100)]
    for _ in range(10):
        gc.collect(0)
        heap.maintain()
    assert counted == []
    assert heap.frozen >= count() > heap.whole  # what was frozen since is counted, not walked

    kept.extend(Node() for _ in range(heap.whole // GROWTH + 1000))
    gc.collect(0)
    heap.maintain()  # enough could have grown: counted, and all collected
    assert counted and heap.whole_collections == 1 and heap.frozen == count()


def test_uninstalled_it_gives_the_frozen_objects_back_and_freezes_no_more() -> None:
    heap = FrozenHeap()
    heap.install()
    kept = [Node() for _ in range(1000)]
    gc.collect()
    assert gc.get_freeze_count() >= len(kept)
    heap.uninstall()
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert gc.get_freeze_count() == 0


def gc_metrics(text: str) -> dict[str, float]:
    return {name: float(value) for name, value in re.findall(r"^(scanroute_edge_gc_\S+) (\S+)$", text, re.M)}


async def test_metrics_show_the_collectors_work(edge: httpx.AsyncClient) -> None:
    """An operator sees the collections by generation, their time and the frozen objects in /metrics."""
    before = gc_metrics((await edge.get("/metrics")).text)
    gc.collect(0)
    after = gc_metrics((await edge.get("/metrics")).text)
    young, spent = (f'scanroute_edge_gc_{name}_total{{generation="0"}}' for name in ("collections", "seconds"))
    assert after[young] >= before[young] + 1 and after[spent] > before[spent]
    assert after["scanroute_edge_gc_frozen_objects"] > 0
    assert "scanroute_edge_gc_whole_collections_total" in after

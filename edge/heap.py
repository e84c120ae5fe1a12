"""The edge's long-lived objects and Python's cycle collector (docs/edge.md, "Garbage collection").

A busy edge's long-lived objects are its local cache: three objects the collector tracks per cached code,
hundreds of thousands at the default EDGE_CACHE_MB. CPython traverses an object at each collection of its
generation, and collects the oldest whenever what was promoted into it grew by a quarter. With the cache
at its bound and evicting (bench-edge (b): Zipf over 1,000,000 codes, 16 % of scans missing the cache) the
collections took 8 % of the process's time, full ones every 4 s stopping it for 200–240 ms each.

The edge makes almost no cyclic garbage (a scan's objects are freed by their reference counts), so
`FrozenHeap` moves what survives any collection out of the collector's generations (`gc.freeze()`): an
object is traversed once, by the collection of the youngest generation that finds it alive, and the
collections of the older ones find nothing to do. Freezing right after a collection freezes no garbage the
collection could have found. An object freed by its reference count (an evicted cache entry, a scan's
request) leaves the frozen objects at once; one that becomes part of an unreachable cycle after it was
frozen stays until everything is collected again, which `maintain` does once the frozen objects have grown
by a quarter since it last did — CPython's own rule for full collections, applied to the frozen objects.

Counting the frozen objects (`gc.get_freeze_count()`) walks every one of them: 2.5–8 ms in an edge process,
which checked once a second and so stopped its own scans, and those of any process beside it on the core,
for that long every second (BENCHMARKS.md, 2026-12-01 "heap"). The callback therefore counts what each
collection freezes (what the generations hold when it ends), and `maintain` counts the frozen
objects only once those alone could make a quarter: what each collection froze, with nothing subtracted for
what died since, is an upper bound of the growth.
"""

from __future__ import annotations

import asyncio
import gc
import time

GROWTH = 4  # everything is collected again once the frozen objects grew by 1/GROWTH since it last was
MAINTAIN_INTERVAL = 1.0  # seconds between two checks of that growth


class FrozenHeap:
    def __init__(self) -> None:
        self.whole = 0  # objects frozen after the last collection that traversed all of them
        self.frozen_since = 0  # objects frozen since then, or since the last count: at least the growth
        self.whole_collections = 0  # by `maintain`
        self.collections = [0, 0, 0]  # by generation, while installed (/metrics)
        self.seconds = [0.0, 0.0, 0.0]  # spent in them
        self._started = 0.0

    def install(self) -> None:
        """Freeze what exists now (start-up's modules, settings and pools) and, from now on, what survives
        each collection."""
        gc.freeze()
        self.whole = gc.get_freeze_count()
        gc.callbacks.append(self._collected)

    def uninstall(self) -> None:
        """Stop freezing, and give the frozen objects back to the collector (a process stopping, or a test's)."""
        if self._collected in gc.callbacks:
            gc.callbacks.remove(self._collected)
        gc.unfreeze()

    def _collected(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        # Everything was frozen after the last collection: what the generations hold now (gc.get_objects()
        # leaves the frozen out) is what this one left alive, about to be frozen in turn.
        self.frozen_since += len(gc.get_objects())
        gc.freeze()
        self.collections[generation] += 1
        self.seconds[generation] += time.perf_counter() - self._started

    def maintain(self) -> None:
        """Collect everything once the frozen objects grew by a quarter since the last time: what died in cycles
        after it was frozen is freed (the callback freezes the survivors again). The frozen objects are counted
        only once what was frozen since the last count could make that quarter."""
        if self.frozen_since <= self.whole // GROWTH:
            return
        frozen = gc.get_freeze_count()
        if frozen > self.whole + self.whole // GROWTH:
            gc.unfreeze()
            gc.collect()
            frozen = self.whole = gc.get_freeze_count()
            self.whole_collections += 1
        self.frozen_since = max(0, frozen - self.whole)

    @property
    def frozen(self) -> int:
        """The frozen objects, at most: those last counted, and those frozen since (none of the deaths since)."""
        return self.whole + self.frozen_since

    async def watch(self) -> None:
        """`maintain` every MAINTAIN_INTERVAL, until cancelled."""
        while True:
            self.maintain()
            await asyncio.sleep(MAINTAIN_INTERVAL)

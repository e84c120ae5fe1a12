"""The edge's long-lived objects and Python's cycle collector (docs/edge.md, "Garbage collection").

A busy edge's long-lived objects are its local cache: about seven objects the collector tracks per cached
code, over 300,000 at the default EDGE_CACHE_MB. CPython collects its oldest generation whenever the objects
promoted into it have grown by a quarter since its last full collection. With the cache at its bound and
evicting (bench-edge (b): Zipf over 1,000,000 codes, 16 % of scans missing the cache) that was every 4 s,
each full collection traversing the whole cache and stopping the process for 200–240 ms.

`FrozenHeap` moves what survives a full collection out of the collector's generations (`gc.freeze()`), so the
next full collection traverses only what was promoted since. Freezing right after a full collection freezes
no garbage: that collection has just freed every unreachable cycle. An object freed by its reference count
(an evicted cache entry) leaves the frozen objects at once; one that later becomes part of an unreachable
cycle (a connection closed, say) stays until the next collection of everything, which runs once the frozen
objects have grown by a quarter since the last one — CPython's own rule, applied to the frozen objects.
"""

from __future__ import annotations

import gc

GROWTH = 4  # everything is collected again once the frozen objects grew by 1/GROWTH since it last was


class FrozenHeap:
    def __init__(self) -> None:
        self.whole = 0  # objects frozen after the last collection that traversed all of them
        self.thawed = False  # the frozen objects are back in the oldest generation, for its next collection
        self.whole_collections = 0

    def install(self) -> None:
        """Freeze what exists now (start-up's modules, settings and pools) and keep freezing survivors."""
        gc.freeze()
        self.whole = gc.get_freeze_count()
        gc.callbacks.append(self._collected)

    def uninstall(self) -> None:
        if self._collected in gc.callbacks:
            gc.callbacks.remove(self._collected)

    def _collected(self, phase: str, info: dict[str, int]) -> None:
        if phase != "stop" or info["generation"] != 2:
            return
        gc.freeze()
        if self.thawed:  # that collection traversed everything
            self.thawed = False
            self.whole_collections += 1
            self.whole = gc.get_freeze_count()
        elif gc.get_freeze_count() > self.whole + self.whole // GROWTH:
            gc.unfreeze()  # the next full collection traverses everything once (and frees the cycles that died)
            self.thawed = True

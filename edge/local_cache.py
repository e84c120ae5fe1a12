"""The per-process cache of edge rows: LRU, TTL, negative entries, single flight, stale fallback.

Keys are the rows' Redis key names, so an invalidation message names the local entry directly.
Hand-written rather than `cachetools` because it needs two things a plain TTL cache lacks: entries of an
older *generation* (cached before the invalidation stream was lost) stay usable as a last resort when no
store can be reached, and a load that an invalidation overtook must not be cached.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class Miss:
    """`peek` found nothing fresh: the caller must load."""


MISS = Miss()
ENTRY_BYTES = 200  # an entry's own objects (OrderedDict slot, _Entry, float, key str header), measured roughly


@dataclass(slots=True)
class _Entry(Generic[T]):
    value: T | None  # None: the row does not exist (negative entry)
    expires: float
    generation: int
    size: int  # estimated bytes


class _Load(Generic[T]):
    __slots__ = ("future", "generation", "overtaken")

    def __init__(self, generation: int) -> None:
        self.future: asyncio.Future[T | None] = asyncio.get_running_loop().create_future()
        self.generation = generation
        self.overtaken = False  # an invalidation of this key arrived while loading


class LocalCache(Generic[T]):
    def __init__(self, max_entries: int, ttl: float, negative_ttl: float, max_bytes: int = 64 << 20,
                 weigh: Callable[[T], int] = lambda value: 0) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.weigh = weigh  # a value's estimated bytes beyond its key and ENTRY_BYTES
        self.bytes = 0
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.generation = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, _Entry[T]] = OrderedDict()
        self._loads: dict[str, _Load[T]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, key: str) -> T | None | Miss:
        """The fresh cached row, None if known not to exist, MISS otherwise: the hit path, without a task."""
        entry = self._entries.get(key)
        if entry is not None and entry.generation == self.generation and entry.expires > time.monotonic():
            self._entries.move_to_end(key)
            self.hits += 1
            return entry.value
        return MISS

    async def get(self, key: str, load: Callable[[], Awaitable[T | None]]) -> T | None:
        """The cached row (None if known not to exist); concurrent misses of one key share one `load`."""
        value = self.peek(key)
        if not isinstance(value, Miss):
            return value
        entry = self._entries.get(key)
        self.misses += 1
        pending = self._loads.get(key)
        if pending is not None:
            return await asyncio.shield(pending.future)
        return await self._load(key, load, entry)

    async def _load(self, key: str, load: Callable[[], Awaitable[T | None]], old: _Entry[T] | None) -> T | None:
        pending: _Load[T] = _Load(self.generation)
        self._loads[key] = pending
        try:
            value = await load()
        except BaseException as exc:
            if old is not None and old.value is not None and isinstance(exc, Exception):
                # No store answered: the last row we had beats an error page (never a negative one: a
                # slug created since must not get a false 404).
                value = old.value
                pending.overtaken = True  # serve it, but do not make it fresh again
            else:
                if isinstance(exc, asyncio.CancelledError):
                    pending.future.cancel()
                else:
                    pending.future.set_exception(exc)
                    pending.future.exception()  # mark retrieved: there may be no waiter
                raise
        finally:
            if self._loads.get(key) is pending:
                del self._loads[key]
        if not pending.overtaken and pending.generation == self.generation:
            self._put(key, value)
        pending.future.set_result(value)
        return value

    def _put(self, key: str, value: T | None) -> None:
        ttl = self.ttl if value is not None else self.negative_ttl
        size = ENTRY_BYTES + len(key) + (self.weigh(value) if value is not None else 0)
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        self._entries[key] = _Entry(value, time.monotonic() + ttl, self.generation, size)
        self.bytes += size
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            self.bytes -= self._entries.popitem(last=False)[1].size

    def drop(self, key: str) -> None:
        """The row changed: forget it, and do not cache a load that started before now."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry.size
        pending = self._loads.pop(key, None)
        if pending is not None:
            pending.overtaken = True

    def clear(self) -> None:
        """Invalidations may have been missed: nothing cached so far counts as fresh any more.

        Old entries stay (until evicted) only as the fallback for when no store answers.
        """
        self.generation += 1
        for pending in self._loads.values():
            pending.overtaken = True
        self._loads.clear()

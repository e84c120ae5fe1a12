"""The per-process cache of edge rows: LRU, TTL, negative entries, single flight, a freshness fence, and a
last-resort fallback.

Keys are the rows' Redis key names, so an invalidation message names the local entry directly.
Hand-written rather than `cachetools` because it needs what a plain TTL cache lacks:

- a *fence* (docs/freshness.md): an entry is an answer only while the invalidation follower has confirmed
  being caught up recently — one clock comparison per lookup; otherwise the row is read again;
- invalidations come from the follower's own thread, so a load they overtake must not be cached, and a
  lookup must not join a load that started before an invalidation;
- entries that are no longer fresh (fenced, or of an older generation) stay usable as a last resort when
  no store can be reached, and each such answer is counted.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
LoadToken = tuple[int, int]  # (generation, changes) when a load started
# An entry's own objects beyond its key's characters: the key's str header, the OrderedDict slot and link,
# _Entry (or a negative entry's tuple), its float; 500 matched the RSS growth of a million negative entries.
ENTRY_BYTES = 500
# Unknown keys ("negative entries") are kept apart from the rows, in this share of the cache's byte bound:
# a flood of distinct unknown slugs recycles that share only and can never evict a row (docs/edge.md).
NEGATIVE_SHARE = 16


class Miss:
    """`peek` found nothing fresh: the caller must load."""


MISS = Miss()  # no row cached under the key (perhaps an unknown key's entry, expired)
STALE = Miss()  # a row is cached, but no longer fresh (past its TTL, fenced, or of an older generation)


class Fence:
    """Until when (monotonic seconds) local entries may answer; moved forward by the invalidation follower."""

    __slots__ = ("until",)

    def __init__(self, until: float = 0.0) -> None:
        self.until = until

    def open(self) -> bool:
        return time.monotonic() < self.until


def open_fence() -> Fence:
    """For a cache nobody invalidates from outside (unit tests): always fresh."""
    return Fence(math.inf)


@dataclass(slots=True)
class _Entry(Generic[T]):
    value: T | None  # None: the row does not exist (negative entry)
    expires: float
    generation: int
    size: int  # estimated bytes


class _Load(Generic[T]):
    __slots__ = ("changes", "future", "generation")

    def __init__(self, generation: int, changes: int) -> None:
        self.future: asyncio.Future[T | None] = asyncio.get_running_loop().create_future()
        self.generation = generation
        self.changes = changes  # the cache's change count when the load started


class LocalCache(Generic[T]):
    """Read and filled on the event loop; `drop`, `drop_negative` and `clear` may come from another thread.

    Every invalidation first sets `changes` to a new number, then removes entries. A load caches its row
    only if `changes` did not move while it ran, and checks again after storing it (removing it if an
    invalidation slipped in between), so a row read before a change can never outlive the invalidation of
    that change. The numbers come from one counter (`next()` is atomic), so two threads invalidating at
    once can never leave the value a load started with.
    """

    def __init__(self, max_entries: int, ttl: float, negative_ttl: float, fence: Fence | None = None,
                 max_bytes: int = 64 << 20, weigh: Callable[[T], int] = lambda value: 0) -> None:
        self.max_entries = max_entries
        # The rows get the bound less the unknown keys' share, so that the two together stay within it.
        self.negative_max_bytes = max_bytes // NEGATIVE_SHARE
        self.max_bytes = max_bytes - self.negative_max_bytes
        self.weigh = weigh  # a value's estimated bytes beyond its key and ENTRY_BYTES
        self.bytes = 0  # of the entries, as counted on the event loop (see `_evict`)
        self._dropped = 0  # entries removed from another thread since `bytes` was last recounted
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.fence = fence if fence is not None else open_fence()
        self._numbers = itertools.count(1)
        self.generation = 0
        self.changes = 0
        self.hits = 0
        self.misses = 0
        self.stale_answers = 0  # rows served unconfirmed because no store answered
        self._entries: OrderedDict[str, _Entry[T]] = OrderedDict()  # rows
        self._loads: dict[str, _Load[T]] = {}
        # Unknown keys: key → (expires, generation), oldest first, within their own byte bound.
        self._negatives: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self.negative_bytes = 0
        self._negatives_dropped = False

    def __len__(self) -> int:
        return len(self._entries) + len(self._negatives)

    def peek(self, key: str) -> T | None | Miss:
        """The fresh cached row, None if known not to exist, STALE if the row it has is not fresh, MISS otherwise:
        the hit path, without a task."""
        entry = self._entries.get(key)
        if entry is not None and entry.generation == self.generation and entry.expires > (now := time.monotonic()) \
                and self.fence.until > now:
            try:
                self._entries.move_to_end(key)
            except KeyError:  # dropped by the follower this instant: still the answer of a fresh read
                pass
            self.hits += 1
            return entry.value
        negative = self._negatives.get(key) if entry is None else None
        if negative is not None and negative[1] == self.generation and min(negative[0],
                                                                           self.fence.until) > time.monotonic():
            self.hits += 1
            return None
        return MISS if entry is None else STALE

    async def get(self, key: str, load: Callable[[], Awaitable[T | None]]) -> T | None:
        """The cached row (None if known not to exist); concurrent misses of one key share one `load`."""
        value = self.peek(key)
        if not isinstance(value, Miss):
            return value
        now = time.monotonic()
        self.misses += 1
        pending = self._loads.get(key)
        if pending is not None and pending.changes == self.changes and self.fence.until > now:
            return await asyncio.shield(pending.future)
        return await self._load(key, load)

    async def _load(self, key: str, load: Callable[[], Awaitable[T | None]]) -> T | None:
        pending: _Load[T] = _Load(self.generation, self.changes)
        self._loads[key] = pending
        try:
            value = await load()
        except BaseException as exc:
            last = self.fallback(key) if isinstance(exc, Exception) else None
            if last is not None:
                pending.future.set_result(last)
                return last
            if isinstance(exc, asyncio.CancelledError):
                pending.future.cancel()
            else:
                pending.future.set_exception(exc)
                pending.future.exception()  # mark retrieved: there may be no waiter
            raise
        finally:
            if self._loads.get(key) is pending:
                del self._loads[key]
        self.store(key, value, (pending.generation, pending.changes))
        pending.future.set_result(value)
        return value

    def load_started(self) -> LoadToken:
        """Taken before reading rows that `store` will cache: what the invalidations had reached then."""
        return self.generation, self.changes

    def store(self, key: str, value: T | None, started: LoadToken) -> None:
        """Cache a row (None: known not to exist) read since `started`, unless an invalidation arrived
        meanwhile: a row read before a change must never outlive the invalidation of that change."""
        if started != (self.generation, self.changes):
            return
        self._put(key, value)
        if self.changes != started[1]:  # an invalidation arrived from the follower meanwhile
            removed = self._entries.pop(key, None)
            if removed is not None:
                self.bytes -= removed.size
            self._negatives.pop(key, None)

    def renew(self, key: str, value: T, started: LoadToken) -> None:
        """`store` for a row read again and found unchanged (`value` is the object cached under `key`): its entry
        is fresh again for a TTL, in place — not weighed, replaced or evicted for again."""
        entry = self._entries.get(key)
        if entry is None or entry.value is not value:
            return self.store(key, value, started)
        if started != (self.generation, self.changes):
            return None
        entry.expires = time.monotonic() + self.ttl
        entry.generation = self.generation
        try:
            self._entries.move_to_end(key)
        except KeyError:  # dropped by the follower this instant
            return None
        if self.changes != started[1] and self._entries.pop(key, None) is not None:  # an invalidation meanwhile
            self.bytes -= entry.size
        return None

    def last(self, key: str) -> T | None:
        """The row last cached under `key`, fresh or not (None if none): a read that finds the same row again
        keeps this object, and what was prepared with it."""
        entry = self._entries.get(key)
        return entry.value if entry is not None else None

    def fallback(self, key: str) -> T | None:
        """No store answered: the last row we had beats an error page (never a negative one: a slug created
        since must not get a false 404; never a dropped one: it is known stale). Counted when answered."""
        last = self._entries.get(key)
        if last is None or last.value is None:
            return None
        self.stale_answers += 1
        return last.value

    def _put(self, key: str, value: T | None) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        if self._negatives.pop(key, None) is not None:
            self.negative_bytes -= ENTRY_BYTES + len(key)
        if value is None:
            self._put_negative(key)
            return
        size = ENTRY_BYTES + len(key) + self.weigh(value)
        self._entries[key] = _Entry(value, time.monotonic() + self.ttl, self.generation, size)
        self.bytes += size
        self._evict()

    def _put_negative(self, key: str) -> None:
        negatives = self._negatives
        negatives[key] = (time.monotonic() + self.negative_ttl, self.generation)
        self.negative_bytes += ENTRY_BYTES + len(key)
        if self.negative_bytes > self.negative_max_bytes and self._negatives_dropped:
            self._negatives_dropped = False  # some were removed from the follower's thread: count again
            self.negative_bytes = sum(ENTRY_BYTES + len(k) for k in list(negatives))
        while self.negative_bytes > self.negative_max_bytes or len(negatives) > self.max_entries:
            try:
                self.negative_bytes -= ENTRY_BYTES + len(negatives.popitem(last=False)[0])
            except KeyError:  # emptied by the follower meanwhile
                self.negative_bytes = 0
                break

    def _evict(self) -> None:
        if self.bytes > self.max_bytes and self._dropped:
            # Entries the follower's thread removed still count: recount here rather than share a counter
            # between threads (only this thread writes `bytes`).
            self._dropped = 0
            self.bytes = sum(entry.size for entry in list(self._entries.values()))
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            try:
                self.bytes -= self._entries.popitem(last=False)[1].size
            except KeyError:  # emptied by the follower meanwhile
                self.bytes = 0
                break

    def drop(self, key: str) -> None:
        """The row changed: forget it, and let no load that started before now be cached or joined."""
        self.changes = next(self._numbers)
        if self._entries.pop(key, None) is not None:
            self._dropped += 1
        if self._negatives.pop(key, None) is not None:
            self._negatives_dropped = True

    def drop_negative(self) -> None:
        """New rows exist: forget every "unknown" entry (kept apart from the rows: one assignment)."""
        self.changes = next(self._numbers)
        self._negatives = OrderedDict()
        self._negatives_dropped = True

    def clear(self) -> None:
        """Invalidations may have been missed: nothing cached so far counts as fresh any more.

        Old entries stay (until evicted) only as the fallback for when no store answers.
        """
        self.changes = next(self._numbers)
        self.generation = next(self._numbers)

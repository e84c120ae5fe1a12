"""The local cache on its own: single flight, invalidation while loading, stale fallback, eviction."""

from __future__ import annotations

import asyncio
import time

import pytest

from edge.local_cache import MISS, STALE, Fence, LocalCache


class Source:
    """A row source that counts its loads and can be held open or made to fail."""

    def __init__(self, value: str | None = "row-1") -> None:
        self.value = value
        self.loads = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.failing = False

    async def load(self) -> str | None:
        self.loads += 1
        await self.gate.wait()
        if self.failing:
            raise OSError("no store answers")
        return self.value


def cache(**kwargs: float) -> LocalCache[str]:
    return LocalCache(int(kwargs.get("max_entries", 100)), kwargs.get("ttl", 60.0), kwargs.get("negative_ttl", 60.0))


async def test_concurrent_misses_of_one_key_load_once() -> None:
    rows, source = cache(), Source()
    source.gate.clear()
    waiting = [asyncio.create_task(rows.get("k", source.load)) for _ in range(50)]
    await asyncio.sleep(0)
    source.gate.set()
    assert await asyncio.gather(*waiting) == ["row-1"] * 50
    assert source.loads == 1
    assert await rows.get("k", source.load) == "row-1" and source.loads == 1


async def test_a_load_overtaken_by_an_invalidation_is_not_kept() -> None:
    rows, source = cache(), Source()
    source.gate.clear()
    first = asyncio.create_task(rows.get("k", source.load))
    await asyncio.sleep(0)
    rows.drop("k")  # the row changed while the old version was being read
    source.value = "row-2"
    second = asyncio.create_task(rows.get("k", source.load))  # starts after the change: loads again
    await asyncio.sleep(0)
    source.gate.set()
    await first
    assert await second == "row-2"
    assert await rows.get("k", source.load) == "row-2"
    assert source.loads == 2


async def test_a_row_read_again_unchanged_is_fresh_again_unless_an_invalidation_overtook_the_read() -> None:
    """`renew` (a refresh that found the same row): the entry is fresh again in place; a read overtaken by an
    invalidation leaves it stale, as `store` would not cache it."""
    rows = cache(ttl=0.01)
    row = "row-1"
    rows.store("k", row, rows.load_started())
    assert rows.peek("unknown") is MISS
    time.sleep(0.02)
    assert rows.peek("k") is STALE  # a row is cached, past its TTL
    rows.ttl = 3600.0  # from here on nothing expires by the clock: a slow machine cannot change the outcome
    rows.renew("k", row, rows.load_started())
    assert rows.peek("k") is row and rows.bytes > 0
    rows.clear()  # invalidations may have been missed: the entry is stale again (an older generation)
    assert rows.peek("k") is STALE
    started = rows.load_started()
    rows.drop("other")  # an invalidation while the row was read again
    rows.renew("k", row, started)
    assert rows.peek("k") is STALE
    rows.renew("k", row, rows.load_started())  # read again after the change: fresh, in the new generation
    assert rows.peek("k") is row
    rows.drop("k")
    rows.renew("k", row, rows.load_started())  # nothing cached under it any more: stored as a new entry
    assert rows.peek("k") is row


async def test_after_clear_the_last_row_is_served_only_when_no_store_answers() -> None:
    rows, source = cache(), Source()
    assert await rows.get("k", source.load) == "row-1"
    rows.clear()
    source.value = "row-2"
    assert await rows.get("k", source.load) == "row-2"  # not fresh any more: reloaded
    rows.clear()
    source.failing = True
    assert await rows.get("k", source.load) == "row-2"  # stale beats an error page
    assert await rows.get("k", source.load) == "row-2" and source.loads == 4  # but it is retried every time


async def test_a_dropped_row_is_never_served_from_the_fallback() -> None:
    rows, source = cache(), Source()
    await rows.get("k", source.load)
    rows.drop("k")
    source.failing = True
    with pytest.raises(OSError):
        await rows.get("k", source.load)


async def test_an_unknown_key_is_never_a_fallback_answer() -> None:
    rows, source = cache(), Source(value=None)
    assert await rows.get("k", source.load) is None
    rows.clear()
    source.failing = True
    with pytest.raises(OSError):
        await rows.get("k", source.load)


async def test_negative_entries_expire_on_their_own_ttl() -> None:
    rows, source = cache(negative_ttl=0.0), Source(value=None)
    assert await rows.get("k", source.load) is None
    source.value = "created"
    assert await rows.get("k", source.load) == "created"


async def test_least_recently_used_rows_are_evicted() -> None:
    rows, source = cache(max_entries=2), Source()
    await rows.get("a", source.load)
    await rows.get("b", source.load)
    await rows.get("a", source.load)
    await rows.get("c", source.load)  # evicts b, the least recently used
    assert len(rows) == 2
    await rows.get("a", source.load)
    assert source.loads == 3
    await rows.get("b", source.load)
    assert source.loads == 4


async def test_a_fenced_entry_is_read_again_and_served_only_when_no_store_answers() -> None:
    fence = Fence(time.monotonic() + 60)
    rows, source = LocalCache[str](100, 60.0, 60.0, fence), Source()
    assert await rows.get("k", source.load) == "row-1"
    assert await rows.get("k", source.load) == "row-1" and source.loads == 1  # fence open: a hit
    fence.until = 0.0  # the follower has not confirmed lately
    source.value = "row-2"
    assert await rows.get("k", source.load) == "row-2" and source.loads == 2
    source.failing = True
    assert await rows.get("k", source.load) == "row-2"  # no store: the last row, counted
    assert rows.stale_answers == 1


async def test_a_lookup_does_not_join_a_load_that_started_before_an_invalidation() -> None:
    rows, source = cache(), Source()
    source.gate.clear()
    first = asyncio.create_task(rows.get("k", source.load))
    await asyncio.sleep(0)
    await asyncio.to_thread(rows.drop, "other")  # any invalidation, from the follower's thread
    source.value = "row-2"
    second = asyncio.create_task(rows.get("k", source.load))
    await asyncio.sleep(0)
    source.gate.set()
    assert await first == "row-2"  # both loads read after the gate opened here; only the second is kept
    assert await second == "row-2" and source.loads == 2


async def test_new_rows_forget_unknown_entries_only() -> None:
    rows, known, unknown = cache(), Source(), Source(value=None)
    await rows.get("known", known.load)
    assert await rows.get("unknown", unknown.load) is None
    unknown.value = "created"
    rows.drop_negative()
    assert await rows.get("unknown", unknown.load) == "created"
    await rows.get("known", known.load)
    assert known.loads == 1


async def test_a_flood_of_unknown_keys_evicts_no_row() -> None:
    """Distinct unknown slugs are cached apart from the rows, in a small share of the byte bound: a flood of
    them (each one new) recycles only that share, and every cached code keeps answering from memory."""
    rows: LocalCache[str] = LocalCache(10**9, 60.0, 60.0, max_bytes=100_000, weigh=len)
    known, unknown = Source("row" * 100), Source(value=None)
    for i in range(50):
        await rows.get(f"ns:code:8:qr.test:known{i}", known.load)
    for i in range(5000):
        assert await rows.get(f"ns:code:{200 + len(str(i))}:{'h' * 200}:flood{i}", unknown.load) is None
    for i in range(50):
        assert await rows.get(f"ns:code:8:qr.test:known{i}", known.load) == "row" * 100
    assert known.loads == 50 and unknown.loads == 5000
    assert rows.negative_bytes <= 100_000 // 16 and rows.bytes + rows.negative_bytes <= 100_000
    assert await rows.get(f"ns:code:204:{'h' * 200}:flood4999", unknown.load) is None
    assert unknown.loads == 5000  # the most recent unknown keys are still known to be unknown

"""The control plane's side of the filter of existing codes (shared/code_filter.py, docs/freshness.md).

Writers add their codes' keys in the write-through (`CodeFilterWriter.add`, called by
`EdgeCache.write_codes`, so also by the cache sync's re-application of the outbox). The cache sync's
loop keeps the filter there (`CodeFilterKeeper.run_once`): when Redis has none (a first start, a Redis
restarted empty) or it holds more keys than it was sized for, it is rebuilt from PostgreSQL as a new
generation, without ever missing a code created meanwhile:

1. an empty filter of the new size is stored under `code_filter_next`; from then on every writer adds
   its keys to it too (the ADD script sets bits in both);
2. every (domain, slug) of PostgreSQL is added to it, read through one cursor whose snapshot begins after
   step 1 — so a code committed before the snapshot is read, and one committed after it adds itself;
3. it is renamed to `code_filter` in one script, only if it is still the one step 1 stored (a Redis that
   lost it meanwhile, or another replica's rebuild, makes this one start again);
4. a `*negative*` invalidation makes every edge load the new generation.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from shared.code_filter import (
    ADD,
    FULL,
    GROWTH,
    HEADER_BYTES,
    INSTALL,
    MIN_CAPACITY,
    Shape,
    bits_for,
    empty,
    header,
    key_hashes,
    parse_header,
)
from shared.keys import NEGATIVE_ENTRIES, RedisKeys

log = logging.getLogger(__name__)
CHUNK = 10_000  # codes per cursor fetch during a rebuild
CODES_PER_CALL = 1_000  # codes per ADD script: Redis never blocks the edges for one long script
ALL_KEYS = "SELECT domain, slug FROM qr_codes WHERE slug IS NOT NULL"


class CodeFilterWriter:
    def __init__(self, redis: aioredis.Redis, keys: RedisKeys) -> None:
        self.redis = redis
        self.keys = keys
        self._add = redis.register_script(ADD)
        # This process has seen Redis hold a filter: if it finds none now, Redis lost its data (a FLUSHALL, a
        # restart without persistence) and edges may not have noticed yet (`lost`).
        self.seen = False
        self.lost = False

    async def add(self, wanted: Iterable[tuple[str, str]], into: list[str] | None = None) -> Shape | None:
        """Set the bits of these (domain, slug) in the filter and in the one being rebuilt (or only `into`).
        Returns the shape of the (first) filter they were set in, None if Redis holds none; raises if Redis
        fails."""
        args = [h for domain, slug in wanted for h in key_hashes(domain, slug)]
        if not args:
            return None
        generation, m = await self._add(keys=into or [self.keys.code_filter, self.keys.code_filter_next], args=args)
        found = generation >= 0
        if into is None:
            self.lost = not found and self.seen
            self.seen = self.seen or found
        return (int(generation), int(m)) if found else None


class CodeFilterKeeper:
    """Rebuilds the filter when it is missing or too full; one step of the cache sync's loop."""

    def __init__(self, db: asyncpg.Pool[Any], writer: CodeFilterWriter,
                 announce: Callable[[list[str]], Awaitable[str | None]]) -> None:  # EdgeCache.invalidate
        self.db = db
        self.writer = writer
        self.redis = writer.redis
        self.keys = writer.keys
        self.announce = announce
        self._install = self.redis.register_script(INSTALL)
        self.rebuilds = 0

    async def run_once(self) -> bool:
        """Check the filter; rebuild it if needed. Returns whether it rebuilt (and installed) one."""
        head = await self.redis.getrange(self.keys.code_filter, 0, HEADER_BYTES - 1)
        parsed = parse_header(head) if isinstance(head, bytes) else None
        if parsed is None:
            return await self.rebuild("missing")
        self.writer.seen = True
        _, m, _ = parsed
        set_bits: int = await self.redis.bitcount(self.keys.code_filter, HEADER_BYTES, -1)
        if set_bits > FULL * m:
            return await self.rebuild(f"{set_bits / m:.0%} of its bits set")
        return False

    async def rebuild(self, why: str) -> bool:
        count: int = await self.db.fetchval("SELECT count(*) FROM qr_codes WHERE slug IS NOT NULL")
        capacity = max(MIN_CAPACITY, GROWTH * count)
        m = bits_for(capacity)
        generation = secrets.randbits(32)
        log.info("rebuilding the code filter (%s): %d codes, room for %d, %d KiB", why, count, capacity,
                 (m // 8 + HEADER_BYTES) >> 10)
        await self.redis.set(self.keys.code_filter_next, empty(m, generation))
        async with self.db.acquire() as conn, conn.transaction(readonly=True):
            cursor = await conn.cursor(ALL_KEYS)
            while rows := await cursor.fetch(CHUNK):
                for start in range(0, len(rows), CODES_PER_CALL):
                    await self.writer.add(((r["domain"], r["slug"]) for r in rows[start:start + CODES_PER_CALL]),
                                          into=[self.keys.code_filter_next])
        if not await self._install(keys=[self.keys.code_filter_next, self.keys.code_filter],
                                   args=[header(m, generation)]):
            log.warning("code filter rebuild lost its work (Redis lost it, or another rebuild replaced it)")
            return False
        self.rebuilds += 1
        self.writer.seen = True
        await self.announce([NEGATIVE_ENTRIES])
        return True

"""Re-applies cache writes from the events outbox, so Redis cannot stay stale.

The write-through after each commit can fail: a crash between COMMIT and the write, or a Redis outage at
that moment, would leave an old row in Redis with nothing to correct it. This loop follows the outbox
(every change writes an event in its own transaction) and publishes the rows again. Publishing is
version-checked and idempotent, so repeats and several control-plane replicas are harmless.

A write that could not reach Redis marks it for repair in PostgreSQL (`cache_repair`); edges read
PostgreSQL instead of Redis's rows until this loop has re-applied the outbox past that mark and cleared
it (docs/freshness.md). The cursor lives in Redis: a Redis restored from an older snapshot brings back an
older cursor, so everything written since is re-applied.

Each pass also takes one step of the audit that replaces rows PostgreSQL contradicts (cache_audit.py), and
checks the filter of existing codes, rebuilding it when Redis has none or it is too full (code_filter.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
import redis.exceptions

from control_plane.services.cache import EdgeCache
from control_plane.services.cache_audit import CacheAudit
from control_plane.services.code_filter import CodeFilterKeeper
from shared.keys import cache_sync_cursor
from shared.unavailable import STORE_UNAVAILABLE

PAUSES: tuple[type[Exception], ...] = (redis.exceptions.RedisError, asyncpg.PostgresError, *STORE_UNAVAILABLE)

log = logging.getLogger(__name__)
BATCH = 1000
# The mark is cleared only if nothing newer than what was re-applied is waiting for repair.
CLEAR_REPAIR = "UPDATE cache_repair SET pending_through = 0 WHERE pending_through BETWEEN 1 AND $1"


class CacheSync:
    def __init__(self, db: asyncpg.Pool[Any], cache: EdgeCache, namespace: str, interval: float = 1.0) -> None:
        self.interval = interval
        self.db = db
        self.cache = cache
        self.cursor_key = cache_sync_cursor(namespace)
        self.audit = CacheAudit(db, cache)
        self.code_filter = CodeFilterKeeper(db, cache.code_filter, cache.invalidate)

    async def run_once(self) -> int:
        """One pass over the events after the cursor; returns how many it re-applied."""
        raw = await self.cache.redis.get(self.cursor_key)
        if raw is None:  # first start, or Redis lost everything: no row in it is older than PostgreSQL
            latest = await self.db.fetchval("SELECT COALESCE(max(seq), 0) FROM events")
            await self.cache.redis.set(self.cursor_key, latest)
            await self.db.execute(CLEAR_REPAIR, latest)
            return 0
        events = await self.db.fetch(
            "SELECT seq, type, data->'object'->>'id' AS object_id FROM events WHERE seq > $1"
            " AND type <> 'qr.scan_threshold' ORDER BY seq LIMIT $2", int(raw), BATCH)
        if not events:
            await self.db.execute(CLEAR_REPAIR, int(raw))
            return 0
        codes = sorted({e["object_id"] for e in events if e["type"].startswith("qr.")})
        groups = sorted({e["object_id"] for e in events if e["type"].startswith("qr_group.")})
        if codes:
            await self.cache.write_codes(self.db, codes)
        for group_id in groups:
            await self.cache.write_group(self.db, group_id)
        await self.cache.redis.set(self.cursor_key, events[-1]["seq"])
        if len(events) < BATCH:
            await self.db.execute(CLEAR_REPAIR, events[-1]["seq"])
        return len(events)

    async def run(self, stop: asyncio.Event) -> None:
        backoff = self.interval
        while not stop.is_set():
            try:
                applied = await self.run_once()
                await self.code_filter.run_once()
                await self.audit.run_once()
                backoff = self.interval
            except PAUSES as exc:
                log.warning("cache sync paused: %r", exc)
                applied, backoff = 0, min(backoff * 2, 30.0)
            if applied < BATCH:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                except TimeoutError:
                    pass

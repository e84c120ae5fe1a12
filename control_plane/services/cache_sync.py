"""Re-applies cache writes from the events outbox, so Redis cannot stay stale.

The write-through after each commit can fail: a crash between COMMIT and the write, or a Redis outage at
that moment, would leave an old row in Redis with nothing to correct it. This loop follows the outbox
(every change writes an event in its own transaction) and publishes the rows again — with the rows of every
code whose version the transactions it passes changed, as some changes of many codes name them in no event
(a group's deletion detaches its codes under one `qr_group.deleted`; a domain's deletion takes its deleted
codes off its host under none, and re-applying them removes their rows from their old addresses;
docs/freshness.md, "The cache sync's cursor"). Publishing is version-checked and idempotent, so repeats and
several control-plane replicas are harmless.

A write that could not reach Redis marks it for repair in PostgreSQL (`cache_repair`); edges read
PostgreSQL instead of Redis's rows until this loop has re-applied the outbox past that mark and cleared
it (docs/freshness.md). The cursor lives in Redis: a Redis restored from an older snapshot brings back an
older cursor, so everything written since is re-applied.

The outbox is followed by transaction id, and only below the oldest transaction still running (the
horizon): `seq` is taken at INSERT, so an event can commit below a `seq` already passed, but nothing can
commit any more below the horizon. A transaction that stays open holds the loop back; it never skips it.

Each pass also takes one step of the audit that replaces rows PostgreSQL contradicts (cache_audit.py), and
checks the filter of existing codes, rebuilding it when Redis has none or it is too full (code_filter.py).

After each pass it measures its lag: how long the first committed event it has not re-applied yet has been
waiting. The horizon is cluster-wide, so this is how an operator sees a transaction held open anywhere in
the cluster delaying the edges' Redis (docs/freshness.md, "Watching the cache sync").
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import asyncpg
import redis.exceptions
from prometheus_client import CollectorRegistry, Gauge

from control_plane.services.cache import EdgeCache
from control_plane.services.cache_audit import CacheAudit
from control_plane.services.code_filter import CodeFilterKeeper
from shared.keys import cache_sync_cursor, legacy_cache_sync_cursor
from shared.outbox import OutboxPosition
from shared.unavailable import STORE_UNAVAILABLE

PAUSES: tuple[type[Exception], ...] = (redis.exceptions.RedisError, asyncpg.PostgresError, *STORE_UNAVAILABLE)

log = logging.getLogger(__name__)
BATCH = 1000
# Every transaction below it has ended: no event can commit there any more.
HORIZON = "SELECT pg_snapshot_xmin(pg_current_snapshot())"
FOLLOWING = """SELECT xid, seq, type, data->'object'->>'id' AS object_id FROM events
    WHERE (xid, seq) > ($1, $2) AND xid < $3 AND type <> 'qr.scan_threshold' ORDER BY xid, seq LIMIT $4"""
# The codes whose version a transaction below $3 changed (or that it created), after ($1, $2) in that order, so
# that the changes no event names — a group's deletion detaches its codes under one `qr_group.deleted` — are
# re-applied too (migration 0023). One range of an index, usually a few rows a pass.
CHANGED_CODES = """SELECT changed_xid, id FROM qr_codes WHERE (changed_xid, id) > ($1, $2) AND changed_xid < $3
    ORDER BY changed_xid, id LIMIT $4"""
# The mark is cleared only if nothing that committed after the pass's horizon is waiting for repair.
CLEAR_REPAIR = "UPDATE cache_repair SET pending_through = 0 WHERE pending_through BETWEEN 1 AND $1"
# The first committed event after the cursor, in the sync's order (one index probe, whatever waits behind it):
# its age by PostgreSQL's clock. `created_at` is its transaction's start, so the age never understates it.
WAITING = """SELECT extract(epoch FROM clock_timestamp() - created_at)::float8 FROM events
    WHERE (xid, seq) > ($1, $2) AND type <> 'qr.scan_threshold' ORDER BY xid, seq LIMIT 1"""


class CacheSyncMetrics:
    """Updated once per pass, in the registry of the process's `/metrics` (docs/operations.md)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.lag = Gauge("scanroute_cache_sync_lag_seconds",
                         "Age of the first committed outbox event the cache sync has not re-applied to Redis"
                         " (0 when none waits); grows while a transaction open anywhere in the cluster holds"
                         " its horizon", registry=self.registry)
        self.last_pass = Gauge("scanroute_cache_sync_last_pass_timestamp_seconds",
                               "When this process's cache sync last finished a pass", registry=self.registry)


class CacheSync:
    def __init__(self, db: asyncpg.Pool[Any], cache: EdgeCache, namespace: str, interval: float = 1.0,
                 metrics: CacheSyncMetrics | None = None) -> None:
        self.interval = interval
        self.metrics = metrics or CacheSyncMetrics()
        self.db = db
        self.cache = cache
        self.cursor_key = cache_sync_cursor(namespace)
        self.legacy_cursor_key = legacy_cache_sync_cursor(namespace)
        self.audit = CacheAudit(db, cache)
        self.code_filter = CodeFilterKeeper(db, cache.code_filter, cache.invalidate)

    async def run_once(self) -> int:
        """One pass over the events after the position; returns how many it re-applied."""
        horizon: int = await self.db.fetchval(HORIZON)
        position = await self._position()
        if position is None:  # first start, or Redis lost everything: no row in it is older than PostgreSQL
            await self._reached(horizon)
            await self._measure(OutboxPosition(horizon, 0))
            return 0
        events = await self.db.fetch(FOLLOWING, position.xid, position.seq, horizon, BATCH)
        codes = sorted({e["object_id"] for e in events if e["type"].startswith("qr.")})
        groups = sorted({e["object_id"] for e in events if e["type"].startswith("qr_group.")})
        if codes:
            await self.cache.write_codes(self.db, codes)
        for group_id in groups:
            await self.cache.write_group(self.db, group_id)
        # The transactions this pass moves the cursor past: those below the last event's, or below the horizon.
        await self._changed_codes(position.xid, events[-1]["xid"] if len(events) == BATCH else horizon, set(codes))
        if len(events) == BATCH:
            position = OutboxPosition(events[-1]["xid"], events[-1]["seq"])
            await self.cache.redis.set(self.cursor_key, position.encode())
        else:
            position = OutboxPosition(horizon, 0)
            await self._reached(horizon)
        await self._measure(position)
        return len(events)

    async def _changed_codes(self, start: int, end: int, written: set[str]) -> None:
        """Re-applies every code whose version a transaction in [start, end) changed, beyond those an event
        named (`written`). Each transaction id is walked by exactly one pass: the one whose cursor moves from
        it (or from below it) to a later one. Codes changed before migration 0023 (id 0) are left to their
        events, as before it."""
        after: tuple[int, str] = (max(start, 1), "")  # every id sorts after ""
        while after[0] < end:
            rows = await self.db.fetch(CHANGED_CODES, *after, end, BATCH)
            unwritten = [r["id"] for r in rows if r["id"] not in written]
            if unwritten:
                await self.cache.write_codes(self.db, unwritten)
            if len(rows) < BATCH:
                return
            after = (rows[-1]["changed_xid"], rows[-1]["id"])

    async def _measure(self, position: OutboxPosition) -> None:
        """The lag as this pass leaves it: what committed meanwhile, or above a held horizon, is waiting."""
        age: float | None = await self.db.fetchval(WAITING, position.xid, position.seq)
        self.metrics.lag.set(max(age or 0.0, 0.0))
        self.metrics.last_pass.set(time.time())

    async def _position(self) -> OutboxPosition | None:
        raw = await self.cache.redis.get(self.cursor_key)
        if raw is not None:
            return OutboxPosition.decode(raw)
        legacy = await self.cache.redis.get(self.legacy_cursor_key)  # an earlier version's `seq`
        return None if legacy is None else OutboxPosition(0, int(legacy))  # events before 0017 have xid 0

    async def _reached(self, horizon: int) -> None:
        """Every event below the horizon has been re-applied."""
        await self.cache.redis.set(self.cursor_key, OutboxPosition(horizon, 0).encode())
        await self.db.execute(CLEAR_REPAIR, horizon)

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

"""`qr.expired` once per code (docs/rules.md): when its `valid_until` (its own, else its group's) has passed
or its human scans reached `max_scans`.

A short periodic sweep of the ingest worker claims the codes not announced yet (SKIP LOCKED, so several
workers share it), records one event each in the same transaction, and writes the rows of codes that
reached their limit through to Redis with an invalidation, so every edge answers `expired` from then on.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions

from shared.edge_rows import RowStore, load_codes
from shared.keys import INVALIDATION_FIELD, INVALIDATION_MAXLEN, RedisKeys
from shared.outbox import record_event

log = logging.getLogger(__name__)
SWEEP_BATCH = 1000
SWEEP = f"""
WITH due AS (
    (SELECT id FROM qr_codes WHERE scan_limit_reached_at IS NOT NULL AND expired_notified_at IS NULL)
    UNION
    (SELECT id FROM qr_codes WHERE valid_until <= now() AND expired_notified_at IS NULL)
    UNION
    (SELECT c.id FROM qr_groups g JOIN qr_codes c ON c.group_id = g.id
     WHERE g.valid_until <= now() AND c.valid_until IS NULL AND c.expired_notified_at IS NULL
       AND c.deleted_at IS NULL)
), claimed AS (
    SELECT c.id FROM qr_codes c JOIN due USING (id)
    WHERE c.deleted_at IS NULL AND c.kind = 'dynamic' AND c.expired_notified_at IS NULL
    ORDER BY c.id LIMIT {SWEEP_BATCH} FOR UPDATE OF c SKIP LOCKED
)
UPDATE qr_codes c SET expired_notified_at = now() FROM claimed WHERE c.id = claimed.id
RETURNING c.id, c.org_id, c.livemode, c.domain, c.slug, c.scan_count, c.max_scans, c.valid_until,
          c.scan_limit_reached_at IS NOT NULL AS limit_reached
"""


def expired_object(row: asyncpg.Record) -> dict[str, Any]:
    """The event's `data.object`: the code's id, why it expired, and its count."""
    return {"id": row["id"], "object": "qr_code", "reason": "max_scans" if row["limit_reached"] else "valid_until",
            "scan_count": row["scan_count"]}


class ExpirySweep:
    def __init__(self, db: asyncpg.Pool[Any], redis: aioredis.Redis, keys: RedisKeys) -> None:
        self.db = db
        self.redis = redis
        self.keys = keys
        self.rows = RowStore(redis, keys)

    async def run_once(self) -> int:
        """Announces the codes that expired since the last sweep; returns how many."""
        async with self.db.acquire() as proxy, proxy.transaction():
            conn = cast("asyncpg.Connection[Any]", proxy)  # the pool's proxy has every Connection method
            expired = await conn.fetch(SWEEP)
            for row in expired:
                await record_event(conn, row["org_id"], row["livemode"], "qr.expired", expired_object(row))
        await self._publish([r for r in expired if r["limit_reached"]])
        return len(expired)

    async def _publish(self, limited: list[asyncpg.Record]) -> None:
        """Best effort: the control plane's cache sync re-applies every code named by an event anyway."""
        if not limited:
            return
        rows = await load_codes(self.db, [r["id"] for r in limited])
        try:
            await self.rows.store_codes([(r["domain"], r["slug"], rows[r["id"]]) for r in limited])
            async with self.redis.pipeline(transaction=False) as pipe:
                for r in limited:
                    pipe.xadd(self.keys.invalidations, {INVALIDATION_FIELD: self.keys.code(r["domain"], r["slug"])},
                              maxlen=INVALIDATION_MAXLEN, approximate=True)
                await pipe.execute()
        except (OSError, redis.exceptions.RedisError) as exc:
            log.warning("write-through of %d expired codes failed; the cache sync repeats it: %r", len(limited), exc)

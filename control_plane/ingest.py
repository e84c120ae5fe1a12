"""The ingest worker: scan stream → scans table, exactly once.

Consumer group on the scan stream. On start a consumer re-reads its own pending entries, then new ones.
A batch is COPYed into a temporary staging table and inserted with ON CONFLICT DO NOTHING on the edge's
scan id, so a redelivered batch is a no-op; `scan_count` grows only by the rows actually inserted, in the
same transaction; XACK follows COMMIT.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions

from control_plane.enrich import is_bot, scan_method
from shared.database import create_pool
from shared.keys import INGEST_GROUP, SCAN_FIELD, RedisKeys
from shared.redis_client import create_redis
from shared.scan_event import ScanEvent
from shared.settings import IngestSettings

log = logging.getLogger(__name__)

COLUMNS = ("scan_id", "scanned_at", "code_id", "group_id", "org_id", "livemode", "outcome", "method",
           "scan_method", "ip_hash", "visitor_hash", "user_agent", "referer", "accept_language", "country",
           "is_bot", "properties")
STAGING = "CREATE TEMP TABLE IF NOT EXISTS scans_staging (LIKE scans) ON COMMIT DELETE ROWS"
INSERT = f"""
WITH inserted AS (
    INSERT INTO scans ({", ".join(COLUMNS)})
    SELECT DISTINCT ON (scan_id) {", ".join(COLUMNS)} FROM scans_staging ORDER BY scan_id
    ON CONFLICT DO NOTHING
    RETURNING code_id, is_bot
), counts AS (
    SELECT code_id, count(*) AS n FROM inserted WHERE NOT is_bot GROUP BY code_id
), counted AS (
    UPDATE qr_codes c SET scan_count = c.scan_count + counts.n FROM counts WHERE c.id = counts.code_id
)
SELECT count(*) FROM inserted
"""
RETRYABLE = (OSError, redis.exceptions.RedisError, asyncpg.PostgresError, asyncpg.InterfaceError,
             TimeoutError)


def scan_record(event: ScanEvent) -> tuple[Any, ...]:
    return (event.scan_id, datetime.fromtimestamp(event.ts_ms / 1000, UTC), event.code_id, event.group_id,
            event.org_id, event.livemode, event.outcome, event.method, scan_method(event), event.ip_hash,
            event.visitor_hash, event.user_agent, event.referer, event.accept_language, event.country,
            is_bot(event), event.properties)


class IngestWorker:
    def __init__(self, settings: IngestSettings, db: asyncpg.Pool[Any], redis: aioredis.Redis) -> None:
        self.settings = settings
        self.db = db
        self.redis = redis
        self.keys = RedisKeys(settings.stores.redis_namespace)
        self.partitions: set[date] = set()
        self.ingested = 0

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.keys.scans, INGEST_GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self, stop: asyncio.Event) -> None:
        cursor = "0"  # own pending entries first: they were read before a crash but never acknowledged
        backoff = 0.1
        while not stop.is_set():
            try:
                if cursor == "0":
                    await self.ensure_group()
                reply: Any = await self.redis.xreadgroup(
                    INGEST_GROUP, self.settings.consumer, {self.keys.scans: cursor},
                    count=self.settings.batch_size, block=None if cursor == "0" else self.settings.block_ms)
                entries = reply[0][1] if reply else []
                if entries:
                    await self.ingest(entries)
                elif cursor == "0":
                    cursor = ">"
                backoff = 0.1
            except RETRYABLE as exc:
                log.warning("ingest paused, retrying in %.1fs: %r", backoff, exc)
                cursor = "0"
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def ingest(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> int:
        """Insert a batch; returns the number of new rows. Acknowledges every entry after COMMIT."""
        ids = [entry_id for entry_id, _ in entries]
        records = []
        for entry_id, fields in entries:
            payload = fields.get(SCAN_FIELD) if fields else None
            try:
                records.append(scan_record(ScanEvent.decode(payload or b"")))
            except (ValueError, TypeError, KeyError) as exc:
                log.error("dropping malformed scan entry %s: %r", entry_id, exc)
        inserted = 0
        if records:
            await self.ensure_partitions({r[1].date() for r in records})
            async with self.db.acquire() as conn, conn.transaction():
                await conn.execute(STAGING)
                await conn.copy_records_to_table("scans_staging", records=records, columns=COLUMNS)
                inserted = await conn.fetchval(INSERT)
        await self.redis.xack(self.keys.scans, INGEST_GROUP, *ids)
        self.ingested += len(records)
        return inserted

    async def ensure_partitions(self, days: set[date]) -> None:
        missing = days - self.partitions
        if missing:
            await self.db.execute("SELECT ensure_scan_partitions($1, $2)", min(missing),
                                  max(missing) + timedelta(days=1))
            self.partitions |= {min(missing) + timedelta(days=n) for n in range((max(missing) - min(missing)).days + 2)}


async def serve(settings: IngestSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    db = await create_pool(settings.stores.database_url, min_size=0, max_size=2)
    redis = create_redis(settings.stores.redis_url, socket_timeout=settings.block_ms / 1000 + 5)
    worker = IngestWorker(settings, db, redis)
    log.info("ingest worker %s started", settings.consumer)
    try:
        await worker.run(stop)
    finally:
        await redis.aclose()
        await db.close()
        log.info("ingest worker %s stopped after %d scans", settings.consumer, worker.ingested)

"""The ingest worker: scan stream → scans table, exactly once, enriched.

Consumer group on the scan stream. On start a consumer re-reads its own pending entries, then new ones;
entries that a dead consumer left unacknowledged are claimed with XAUTOCLAIM. A batch is COPYed into a
temporary staging table and inserted with ON CONFLICT DO NOTHING on the edge's scan id, so a redelivered
batch is a no-op; `scan_count` (and its threshold events) grow only by the rows actually inserted, in the
same transaction; XACK follows COMMIT. An entry that cannot be stored is dead-lettered, not retried forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
import orjson
import redis.asyncio as aioredis
import redis.exceptions

from control_plane.ingest import dead_letters
from control_plane.ingest.counts import add_scans
from control_plane.ingest.dead_letters import DeadLetter
from control_plane.ingest.enrich import enrich_request
from control_plane.ingest.partitions import ScanPartitions
from control_plane.ingest.rollups import add_rollups, add_sketches, count_humans, humans_per_code, sketch_humans
from control_plane.ingest.stream import Entry, ScanStream
from shared.database import create_pool
from shared.keys import SCAN_FIELD, RedisKeys
from shared.processes import stop_on_signals
from shared.redis_client import create_redis
from shared.settings import IngestSettings

log = logging.getLogger(__name__)

COLUMNS = ("scan_id", "scanned_at", "code_id", "group_id", "org_id", "livemode", "outcome", "method",
           "scan_method", "ip_hash", "visitor_hash", "user_agent", "referer", "accept_language", "country",
           "is_bot", "properties", "device_type", "os", "browser", "scanner_app")
STAGING = "CREATE TEMP TABLE IF NOT EXISTS scans_staging (LIKE scans) ON COMMIT DELETE ROWS"
# ON CONFLICT DO NOTHING also skips a scan_id repeated within the batch; RETURNING names the rows that are new.
INSERT = f"""
INSERT INTO scans ({", ".join(COLUMNS)}) SELECT {", ".join(COLUMNS)} FROM scans_staging
ON CONFLICT DO NOTHING RETURNING scan_id::text
"""
RETRYABLE = (OSError, redis.exceptions.RedisError, asyncpg.PostgresError, asyncpg.InterfaceError,
             TimeoutError)
# The data itself is bad: rejected by PostgreSQL, or by asyncpg's encoders while COPYing (a scan_id that is not
# a UUID, a field of the wrong type). Retrying the same rows can never succeed.
POISON = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, ValueError, TypeError, OverflowError)
MAINTENANCE_INTERVAL_S = 3600.0
TRIM_INTERVAL_S = 5.0


@dataclass(slots=True)
class Pending:
    """A decoded entry on its way into the database."""

    entry_id: bytes
    payload: bytes
    record: tuple[Any, ...]


def scan_record(payload: bytes) -> tuple[Any, ...]:
    """One scans row from an encoded ScanEvent. The hot path of the worker: it reads the JSON object
    directly instead of building a ScanEvent per scan, and enrichment is cached per (agent, method, marker)."""
    event: dict[str, Any] = orjson.loads(payload)
    scan_id = event["scan_id"]
    user_agent = event.get("user_agent") or ""
    e = enrich_request(user_agent, event["method"], bool(event["marker"]))
    return (scan_id, datetime.fromtimestamp(event["ts_ms"] / 1000, UTC), event["code_id"], event["group_id"],
            event["org_id"], event["livemode"], event["outcome"], event["method"], e.scan_method, event["ip_hash"],
            event["visitor_hash"], user_agent, event.get("referer") or "", event.get("accept_language") or "",
            event.get("country"), e.is_bot, event.get("properties") or {}, e.device_type, e.os, e.browser,
            e.scanner_app)


def decode(entries: list[Entry]) -> tuple[list[Pending], list[DeadLetter]]:
    decoded, rejected = [], []
    for entry_id, fields in entries:
        payload = (fields or {}).get(SCAN_FIELD, b"")
        try:
            decoded.append(Pending(entry_id, payload, scan_record(payload)))
        except (ValueError, TypeError, KeyError, OverflowError, orjson.JSONDecodeError) as exc:
            rejected.append(DeadLetter(entry_id.decode(), payload, f"undecodable: {exc!r}"))
    return decoded, rejected


class IngestWorker:
    def __init__(self, settings: IngestSettings, db: asyncpg.Pool[Any], redis: aioredis.Redis) -> None:
        self.settings = settings
        self.db = db
        self.keys = RedisKeys(settings.stores.redis_namespace)
        self.stream = ScanStream(redis, self.keys.scans, settings.consumer)
        self.partitions = ScanPartitions(db)
        self.ingested = 0
        self.dead_lettered = 0
        self._due: dict[str, float] = {}
        self._last_report = (time.monotonic(), 0)

    async def ensure_group(self) -> None:
        await self.stream.ensure_group()

    async def run(self, stop: asyncio.Event) -> None:
        cursor = "0"  # own pending entries first: they were read before a crash but never acknowledged
        backoff = 0.1
        # While PostgreSQL stores one batch, the next is read and decoded: the two use different cores.
        storing: asyncio.Task[int] | None = None
        while not stop.is_set():
            try:
                if cursor == "0":
                    await self.ensure_group()
                await self.periodic()
                entries = await self.stream.read(cursor, self.settings.batch_size,
                                                 None if cursor == "0" else self.settings.block_ms)
                if entries:
                    batch = decode(entries)
                    if storing is not None:
                        await storing
                    storing = asyncio.create_task(self.store(entries, *batch))
                elif cursor == "0":
                    cursor = ">"
                backoff = 0.1
            except RETRYABLE as exc:
                await _settle(storing)  # its entries stay pending and are re-read below
                storing = None
                log.warning("ingest paused, retrying in %.1fs: %r", backoff, exc)
                cursor = "0"
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        if storing is not None:
            await _settle(storing)  # SIGTERM: finish the batch in hand

    def _is_due(self, task: str, interval_s: float) -> bool:
        now = time.monotonic()
        if now < self._due.get(task, 0.0):
            return False
        self._due[task] = now + interval_s
        return True

    async def periodic(self) -> None:
        if self._is_due("claim", self.settings.claim_idle_ms / 2000):
            await self.claim_from_dead_consumers()
        if self._is_due("trim", TRIM_INTERVAL_S):
            await self.stream.trim_acknowledged()
        if self._is_due("partitions", MAINTENANCE_INTERVAL_S):
            await self.partitions.ensure_ahead()
            await self.partitions.drop_expired(self.settings.retention_days)
        if self._is_due("metrics", self.settings.metrics_interval_s):
            await self.report()

    async def claim_from_dead_consumers(self) -> None:
        claimed = await self.stream.claim_idle(self.settings.claim_idle_ms, self.settings.batch_size)
        if not claimed:
            return
        log.info("claimed %d scan entries left unacknowledged by a dead consumer", len(claimed))
        worn = [DeadLetter(entry[0].decode(), (entry[1] or {}).get(SCAN_FIELD, b""),
                           f"delivered {n} times without being acknowledged", n)
                for entry, n in claimed if n > self.settings.max_deliveries]
        if worn:
            await self._dead_letter(worn)
            await self.stream.ack([letter.stream_id.encode() for letter in worn])
        fresh = [entry for entry, n in claimed if n <= self.settings.max_deliveries]
        if fresh:
            await self.ingest(fresh)

    async def ingest(self, entries: list[Entry]) -> int:
        """Insert a batch; returns the number of new rows. Acknowledges every entry after COMMIT."""
        return await self.store(entries, *decode(entries))

    async def store(self, entries: list[Entry], decoded: list[Pending], rejected: list[DeadLetter]) -> int:
        inserted = 0
        if decoded:
            await self.partitions.ensure({p.record[1].date() for p in decoded})
            inserted, poisoned = await self._insert_isolating(decoded)
            self.ingested += len(decoded) - len(poisoned)
            rejected = rejected + poisoned
        if rejected:
            await self._dead_letter(rejected)
        await self.stream.ack([entry_id for entry_id, _ in entries])
        return inserted

    async def _insert_isolating(self, batch: list[Pending]) -> tuple[int, list[DeadLetter]]:
        """Inserts the batch; if PostgreSQL rejects its data, halves it until the poison entries are alone."""
        try:
            return await self._insert(batch), []
        except POISON as exc:
            if len(batch) == 1:
                return 0, [DeadLetter(batch[0].entry_id.decode(), batch[0].payload, f"rejected: {exc!r}")]
        half = len(batch) // 2
        first, first_rejected = await self._insert_isolating(batch[:half])
        second, second_rejected = await self._insert_isolating(batch[half:])
        return first + second, first_rejected + second_rejected

    async def _insert(self, batch: list[Pending]) -> int:
        records = list({p.record[0]: p.record for p in batch}.values())  # one row per scan_id
        async with self.db.acquire() as conn, conn.transaction():
            await conn.execute(STAGING)
            await conn.copy_records_to_table("scans_staging", records=records, columns=COLUMNS)
            new = await conn.fetch(INSERT)
            if len(new) < len(records):  # some were ingested before: count only the new ones
                new_ids = {uuid.UUID(row[0]) for row in new}
                records = [r for r in records if uuid.UUID(r[0]) in new_ids]
            counts = count_humans(records)
            # A pooled connection proxies every Connection method; the stubs just type it apart.
            plain = cast("asyncpg.Connection[Any]", conn)
            await add_rollups(plain, counts)
            await add_sketches(plain, sketch_humans(records))
            await add_scans(plain, humans_per_code(counts))
        return len(new)

    async def _dead_letter(self, letters: list[DeadLetter]) -> None:
        for letter in letters:
            log.error("dead-lettering scan entry %s: %s", letter.stream_id, letter.error)
        await dead_letters.store(self.db, letters)
        self.dead_lettered += len(letters)

    async def report(self) -> None:
        """One log line: throughput since the last report, and how far behind the stream the group is."""
        now = time.monotonic()
        last_at, last_count = self._last_report
        self._last_report = (now, self.ingested)
        stats = await self.stream.stats()
        rate = (self.ingested - last_count) / (now - last_at) if now > last_at else 0.0
        log.info("ingest %s: %.0f scans/s, %d ingested, %d dead-lettered; stream length %d, pending %d, lag %s",
                 self.settings.consumer, rate, self.ingested, self.dead_lettered, stats.length, stats.pending,
                 "unknown" if stats.lag is None else stats.lag)


async def _settle(task: asyncio.Task[int] | None) -> None:
    """Waits for a store task to end; a failure was logged by the caller's retry and its entries stay pending."""
    if task is not None:
        try:
            await task
        except RETRYABLE as exc:
            log.warning("batch not stored, it will be retried: %r", exc)


async def serve(settings: IngestSettings) -> None:
    stop = stop_on_signals()
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

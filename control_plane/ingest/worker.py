"""The ingest worker: scan stream → scans table, exactly once, enriched.

Consumer group on the scan stream. On start a consumer re-reads its own pending entries, then new ones;
entries that a dead consumer left unacknowledged are claimed with XAUTOCLAIM. A batch is stored in one
transaction (control_plane.ingest.store: COPY straight into `scans`, the staging path only after a
duplicate); XACK follows COMMIT. An entry that cannot be stored is dead-lettered, not retried forever: at
once when PostgreSQL rejects its data, after INGEST_MAX_ATTEMPTS failed attempts to store it otherwise
(control_plane.ingest.stream) — never because PostgreSQL or Redis was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions

from control_plane.ingest import dead_letters
from control_plane.ingest.dead_letters import DeadLetter
from control_plane.ingest.expiry import ExpirySweep
from control_plane.ingest.hours import Summary
from control_plane.ingest.metrics import IngestMetrics
from control_plane.ingest.partitions import ScanPartitions
from control_plane.ingest.scan_row import ScanRow, scan_row
from control_plane.ingest.store import store_rows
from control_plane.ingest.stream import Entry, ScanStream
from shared.database import create_pool
from shared.keys import SCAN_FIELD, RedisKeys
from shared.metrics_server import metrics_server
from shared.processes import Backoff, stop_on_signals
from shared.redis_client import create_redis
from shared.scan_event import ScanEvent
from shared.settings import IngestSettings
from shared.unavailable import POSTGRES_TRANSIENT, STORE_UNAVAILABLE

log = logging.getLogger(__name__)

# Not the entries' fault: a store that fails with these is retried, and never counts against the entries.
# Every process's "store unavailable" (shared.unavailable: InternalClientError among them, which a server that
# ends the connection in the middle of a COPY can leave behind), and what only a batch of inserts meets: any
# Redis error, an operator's intervention (a cancelled statement), the server out of resources, a
# serialization failure or deadlock.
OUTAGE: tuple[type[Exception], ...] = (*STORE_UNAVAILABLE, redis.exceptions.RedisError, *POSTGRES_TRANSIENT)
# Retried with backoff; any other PostgreSQL error counts as a failed attempt (control_plane.ingest.stream).
RETRYABLE: tuple[type[Exception], ...] = (*OUTAGE, asyncpg.PostgresError)
# The data itself is bad: rejected by PostgreSQL, or by asyncpg's encoders while COPYing (a scan_id that is not
# a UUID, a field of the wrong type). Retrying the same rows can never succeed.
POISON = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, ValueError, TypeError, OverflowError)
MAINTENANCE_INTERVAL_S = 3600.0
MAINTENANCE_RETRY_S = 30.0  # after partition maintenance gave way to a long reader of `scans`
CHORE_RETRY_S = 30.0  # at the earliest, after a periodic chore failed on anything but an unreachable store
GAUGE_INTERVAL_S = 5.0
EXPIRY_INTERVAL_S = 0.5  # max_scans is enforced within the ingest delay plus this (docs/rules.md)
DECODE_SLICE = 500  # entries decoded between two turns of the event loop: about 5 ms
GC_YOUNG_OBJECTS = 50_000  # tune_garbage_collector


@dataclass(slots=True)
class Pending:
    """A decoded entry on its way into the database."""

    entry_id: bytes
    payload: bytes
    row: ScanRow


@dataclass(slots=True)
class Batch:
    entries: list[Entry]
    decoded: list[Pending]
    undecodable: list[DeadLetter]
    summary: Summary  # of every decoded row: what the batch adds when none was stored before


def decode(entries: list[Entry]) -> Batch:
    batch = Batch(entries, [], [], Summary())
    _decode_into(batch, entries)
    return batch


async def decode_in_turns(entries: list[Entry]) -> Batch:
    """`decode`, a slice at a time, letting the batch being stored meanwhile send its next statement as soon
    as PostgreSQL has answered the last one: decoding a whole batch in one go would keep PostgreSQL waiting."""
    batch = Batch(entries, [], [], Summary())
    for start in range(0, len(entries), DECODE_SLICE):
        _decode_into(batch, entries[start:start + DECODE_SLICE])
        await asyncio.sleep(0)
    return batch


def _decode_into(batch: Batch, entries: list[Entry]) -> None:
    """Decodes and summarises the entries. Whatever an entry makes fail here is that entry's alone (decoding
    and summarising touch nothing outside it), and it would fail again on every delivery, before an attempt is
    counted: it is set aside as undecodable, and never stops the worker (docs/ingest.md)."""
    decoded, undecodable = [], batch.undecodable
    for entry_id, fields in entries:
        payload = (fields or {}).get(SCAN_FIELD, b"")
        try:
            decoded.append(Pending(entry_id, payload, scan_row(ScanEvent.decode(payload))))
        except Exception as exc:  # see above
            undecodable.append(DeadLetter(entry_id.decode(), payload, f"undecodable: {exc!r}"))
    try:
        batch.summary.add(p.row for p in decoded)
    except Exception:  # a row that cannot be counted: summarise again, one row at a time
        decoded = _summarise_one_by_one(batch, decoded)
    batch.decoded += decoded


def _summarise_one_by_one(batch: Batch, decoded: list[Pending]) -> list[Pending]:
    """Rebuilds the batch's summary (the failed pass left part of its rows in it) from the rows decoded before,
    then adds each of `decoded` that a summary of its own accepts; returns those, the others are undecodable."""
    batch.summary = Summary()
    batch.summary.add(p.row for p in batch.decoded)
    countable = []
    for pending in decoded:
        try:
            Summary().add([pending.row])  # first alone: a row that fails may have been counted in part
        except Exception as exc:
            batch.undecodable.append(DeadLetter(pending.entry_id.decode(), pending.payload,
                                                f"undecodable: {exc!r}"))
            continue
        batch.summary.add([pending.row])
        countable.append(pending)
    return countable


class IngestWorker:
    def __init__(self, settings: IngestSettings, db: asyncpg.Pool[Any], redis: aioredis.Redis,
                 metrics: IngestMetrics | None = None) -> None:
        self.settings = settings
        self.db = db
        self.keys = RedisKeys(settings.stores.redis_namespace)
        self.stream = ScanStream(redis, self.keys.scans, self.keys.scan_attempts, settings.consumer)
        self.partitions = ScanPartitions(db)
        self.expiry = ExpirySweep(db, redis, self.keys)
        self.metrics = metrics or IngestMetrics()
        self.ingested = 0  # entries done with: stored now or before
        self.dead_lettered = 0
        self._due: dict[str, float] = {}
        self._last_report = (time.monotonic(), 0)

    async def ensure_group(self) -> None:
        await self.stream.ensure_group()

    async def run(self, stop: asyncio.Event) -> None:
        cursor = "0"  # own pending entries first: they were read before a crash or an outage, never acknowledged
        backoff = Backoff()
        # While PostgreSQL stores one batch, the next is read and decoded: the two use different cores.
        storing: asyncio.Task[int] | None = None
        while not stop.is_set():
            try:
                if storing is not None and storing.done():
                    finished, storing = storing, None
                    await finished  # a failure shows here, not only when the next batch arrives
                if cursor == "0":
                    await self.ensure_group()
                await self.periodic()
                entries = await self.stream.read(cursor, self.settings.batch_size,
                                                 None if cursor == "0" else self.settings.block_ms)
                if entries and cursor == "0":
                    await self.store(decode(entries), redelivered=True)  # re-read until stored
                elif entries:
                    batch = await decode_in_turns(entries)
                    if storing is not None:
                        await storing
                    storing = asyncio.create_task(self.store(batch))
                elif cursor == "0":
                    cursor = ">"
                backoff.reset()
            except RETRYABLE as exc:
                await _settle(storing)  # its entries stay pending and are re-read below
                storing = None
                self.metrics.failed_batches.labels("outage" if isinstance(exc, OUTAGE) else "error").inc()
                cursor = "0"
                await backoff.wait(stop, log, "ingest paused", exc)
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
            await self.claim_from_dead_consumers()  # storing scans, not a chore: its failures are the batch's
        await self._chore("trim", GAUGE_INTERVAL_S, self._trim_and_update_gauges)
        await self._chore("partitions", MAINTENANCE_INTERVAL_S, self.maintain_partitions)
        await self._chore("report", self.settings.metrics_interval_s, self.report)
        await self._chore("expiry", EXPIRY_INTERVAL_S, self.expiry.run_once)

    async def _chore(self, task: str, interval_s: float, run: Callable[[], Awaitable[object]]) -> None:
        """Runs a periodic chore if it is due. One that fails (a bug, a constraint or trigger error in the expiry
        sweep) is logged and tried again CHORE_RETRY_S later at the earliest: it runs before every read of the
        stream, and must never keep the scans from being ingested (docs/ingest.md). A store that cannot be
        reached pauses the worker as before: no scan could be stored either."""
        if not self._is_due(task, interval_s):
            return
        try:
            await run()
        except STORE_UNAVAILABLE:
            raise
        except Exception:  # see above
            retry_s = max(interval_s, CHORE_RETRY_S)
            log.exception("ingest chore %r failed; scans are still ingested, and it is tried again in %.0f s",
                          task, retry_s)
            self._due[task] = max(self._due[task], time.monotonic() + retry_s)

    async def _trim_and_update_gauges(self) -> None:
        await self.stream.trim_acknowledged()
        await self.update_gauges()

    async def maintain_partitions(self) -> None:
        """Days ahead, then retention; both give way to a long reader of `scans` rather than stall ingest behind
        it (control_plane.ingest.partitions), and are tried again MAINTENANCE_RETRY_S later, not in an hour."""
        try:
            await self.partitions.ensure_ahead()
            await self.partitions.drop_expired(self.settings.retention_days)
        except asyncpg.LockNotAvailableError:
            log.info("partition maintenance gave way to a long reader of scans; again in %.0f s", MAINTENANCE_RETRY_S)
            self._due["partitions"] = time.monotonic() + MAINTENANCE_RETRY_S

    async def claim_from_dead_consumers(self) -> None:
        claimed = await self.stream.claim_idle(self.settings.claim_idle_ms, self.settings.batch_size)
        if claimed:
            log.info("claimed %d scan entries left unacknowledged by a dead consumer", len(claimed))
            await self.store(decode(claimed), redelivered=True)

    async def ingest(self, entries: list[Entry]) -> int:
        """Insert a batch; returns the number of new rows. Acknowledges every entry after COMMIT."""
        return await self.store(decode(entries))

    async def store(self, batch: Batch, *, redelivered: bool = False) -> int:
        """Stores the decoded entries, dead-letters the rest, acknowledges all; returns the rows inserted.

        A redelivered batch counts an attempt per entry, once PostgreSQL has handed over a connection."""
        self.metrics.read.inc(len(batch.entries))
        self.metrics.dead_letters.labels("undecodable").inc(len(batch.undecodable))
        inserted, rejected = 0, list(batch.undecodable)
        if batch.decoded:
            await self.partitions.ensure({p.row.scanned_at.date() for p in batch.decoded})
            async with self.db.acquire() as conn:
                plain = cast("asyncpg.Connection[Any]", conn)  # the pool's proxy has every Connection method
                if redelivered:
                    inserted, failed = await self._store_counting_attempts(plain, batch.decoded)
                else:
                    inserted, failed = await self._store_isolating(plain, batch.decoded, POISON, batch.summary)
            rejected += failed
        if rejected:
            await self._dead_letter(rejected)
        await self.stream.ack([entry_id for entry_id, _ in batch.entries], counted=redelivered)
        return inserted

    async def _store_counting_attempts(self, conn: asyncpg.Connection[Any],
                                       batch: list[Pending]) -> tuple[int, list[DeadLetter]]:
        """Entries past INGEST_MAX_ATTEMPTS are dead-lettered unread; on the last attempt any error but an
        outage isolates and sets aside the entries that cause it, so the rest of the batch goes in."""
        limit = self.settings.max_attempts
        try:
            attempts = await self.stream.count_attempts([p.entry_id for p in batch])
        except redis.exceptions.OutOfMemoryError:  # Redis at its maxmemory refuses HINCRBY: storing frees it
            log.warning("Redis is full: storing %d re-read scans without counting this attempt", len(batch))
            attempts = [1] * len(batch)
        worn = [DeadLetter(p.entry_id.decode(), p.payload, f"failed {n - 1} attempts to store", n - 1)
                for p, n in zip(batch, attempts, strict=True) if n > limit]
        self.metrics.dead_letters.labels("attempts").inc(len(worn))
        batch = [p for p, n in zip(batch, attempts, strict=True) if n <= limit]
        poison = (Exception,) if any(n == limit for n in attempts) else POISON
        try:
            inserted, rejected = await self._store_isolating(conn, batch, poison)
        except OUTAGE:
            with contextlib.suppress(*OUTAGE):  # Redis away too: the attempt stays counted, which is harmless
                await self.stream.forgive_attempts([p.entry_id for p in batch])
            raise
        return inserted, worn + rejected

    async def _store_isolating(self, conn: asyncpg.Connection[Any], batch: list[Pending],
                               poison: tuple[type[Exception], ...], summary: Summary | None = None
                               ) -> tuple[int, list[DeadLetter]]:
        """Stores the batch; if it is rejected, halves it until the entries at fault are alone."""
        if not batch:
            return 0, []
        try:
            new = await store_rows(conn, [p.row for p in batch], summary)
        except OUTAGE:
            raise
        except poison as exc:
            if len(batch) == 1:
                self.metrics.dead_letters.labels("rejected").inc()
                return 0, [DeadLetter(batch[0].entry_id.decode(), batch[0].payload, f"rejected: {exc!r}")]
        else:
            self._count_stored(len(batch), new)
            return len(new), []
        half = len(batch) // 2
        first, first_rejected = await self._store_isolating(conn, batch[:half], poison)
        second, second_rejected = await self._store_isolating(conn, batch[half:], poison)
        return first + second, first_rejected + second_rejected

    def _count_stored(self, entries: int, new: list[ScanRow]) -> None:
        self.ingested += entries
        self.metrics.stored.inc(len(new))
        self.metrics.duplicates.inc(entries - len(new))
        if new:
            self.metrics.newest_scan.set(max(row.scanned_at for row in new).timestamp())

    async def _dead_letter(self, letters: list[DeadLetter]) -> None:
        for letter in letters:
            log.error("dead-lettering scan entry %s: %s", letter.stream_id, letter.error)
        await dead_letters.store(self.db, letters)
        self.dead_lettered += len(letters)

    async def update_gauges(self) -> None:
        stats = await self.stream.stats()
        self.metrics.stream_length.set(stats.length)
        self.metrics.pending.set(stats.pending)
        if stats.lag is not None:
            self.metrics.unread.set(stats.lag)

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


def tune_garbage_collector() -> None:
    """A batch makes a few objects per scan (decoded event, row, hour keys, combinations) that hold no cycles and
    live until the batch is stored. Python's default cycle collector runs every 700 new objects and traverses
    each batch's objects again and again (and, once promoted, the whole heap): about a third of the worker's
    Python time per scan in a profile. Objects alive at start (the user agent parser's tables) are frozen out of
    collections, and the youngest generation is collected every GC_YOUNG_OBJECTS new objects: more than a batch
    makes, so most batches are gone before the collector sees them. Cycles are still collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_OBJECTS, *gc.get_threshold()[1:])


async def serve(settings: IngestSettings) -> None:
    tune_garbage_collector()
    stop = stop_on_signals()
    db = await create_pool(settings.stores.database_url, min_size=0, max_size=2)
    redis = create_redis(settings.stores.redis_url, socket_timeout=settings.block_ms / 1000 + 5)
    worker = IngestWorker(settings, db, redis)
    log.info("ingest worker %s started", settings.consumer)
    try:
        with metrics_server(settings.metrics_bind, worker.metrics.registry):
            await worker.run(stop)
    finally:
        await redis.aclose()
        await db.close()
        log.info("ingest worker %s stopped after %d scans", settings.consumer, worker.ingested)

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from time import monotonic
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from control_plane.ingest import worker as worker_module
from control_plane.ingest.partitions import DAYS_AHEAD, ScanPartitions
from control_plane.ingest.worker import IngestWorker
from shared.database import create_pool
from shared.keys import SCAN_FIELD
from shared.scan_event import ScanEvent
from shared.settings import IngestSettings

TODAY = date(2026, 5, 20)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def partition_days(db: asyncpg.Connection[Any]) -> list[date]:
    names = await db.fetch("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                           " WHERE i.inhparent = 'scans'::regclass ORDER BY 1")
    return [date(int(n["relname"][6:10]), int(n["relname"][10:12]), int(n["relname"][12:14])) for n in names]


async def test_partitions_are_made_a_week_ahead(pool: asyncpg.Pool[Any], db: asyncpg.Connection[Any]) -> None:
    await ScanPartitions(pool).ensure_ahead(TODAY)
    days = await partition_days(db)
    assert days[0] == TODAY - timedelta(days=1) and days[-1] == TODAY + timedelta(days=DAYS_AHEAD)
    assert len(days) == DAYS_AHEAD + 2


async def test_retention_drops_whole_old_days_only(pool: asyncpg.Pool[Any], db: asyncpg.Connection[Any]) -> None:
    partitions = ScanPartitions(pool)
    await partitions.ensure({TODAY - timedelta(days=n) for n in range(15)})
    await db.execute(
        "INSERT INTO scans (scan_id, scanned_at, code_id, org_id, livemode, outcome, method, scan_method,"
        " ip_hash, visitor_hash) SELECT gen_random_uuid(), $1::date + interval '12 hours', 'qr_x', 'org_x', true,"
        " 'redirected', 'GET', 'camera', 'i', 'v' FROM generate_series(1, 3)", TODAY - timedelta(days=12))
    assert await partitions.drop_expired(0, TODAY) == 0  # 0 keeps everything
    assert await partitions.drop_expired(10, TODAY) == 4  # 14 to 11 days ago
    assert (await partition_days(db))[0] == TODAY - timedelta(days=10)
    assert await db.fetchval("SELECT count(*) FROM scans") == 0


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Tokyo"])
async def test_retention_drops_the_hourly_rows_of_utc_days_in_a_session_of_any_zone(
        zone: str, db: asyncpg.Connection[Any]) -> None:
    """Partitions are UTC days: so are the hourly rows dropped with them, whatever the session's zone (the
    rows of the first hours of the oldest day kept used to go west of UTC, and to outlive their day east)."""
    hours = ["2026-04-02T20:00:00+00:00", "2026-04-02T23:00:00+00:00", "2026-04-03T00:00:00+00:00",
             "2026-04-03T02:00:00+00:00"]
    await db.execute(
        "INSERT INTO scan_hours (code_id, hour, group_id, livemode, org_id, visitors, ips)"
        " SELECT 'qr_x', h::timestamptz, '', true, 'org_x', '', '' FROM unnest($1::text[]) AS h", hours)
    await db.execute(f"SET timezone = '{zone}'")
    await db.execute("SELECT drop_scan_partitions_before('2026-04-03')")
    await db.execute("SET timezone = 'UTC'")
    kept = await db.fetch("SELECT hour FROM scan_hours ORDER BY hour")
    assert [r["hour"].isoformat() for r in kept] == hours[2:]


@pytest.fixture
async def worker(ingest_settings: IngestSettings, pool: asyncpg.Pool[Any],
                 redis: aioredis.Redis) -> IngestWorker:
    worker = IngestWorker(replace(ingest_settings, retention_days=7), pool, redis)
    await worker.ensure_group()
    return worker


def a_scan(day: date) -> ScanEvent:
    at = int(datetime.combine(day, time(12), UTC).timestamp() * 1000)
    return ScanEvent(str(uuid.uuid4()), at, "qr_x", None, "org_x", True, "redirected", "GET", True, "i", "v")


async def ingest(worker: IngestWorker, day: date) -> None:
    await worker.ingest([(b"1-0", {SCAN_FIELD: a_scan(day).encode()})])


@asynccontextmanager
async def long_reader(db: asyncpg.Connection[Any]) -> AsyncIterator[None]:
    """What a scans_csv export holds for its whole run: a read-only transaction that has read `scans`."""
    async with db.transaction(readonly=True):
        await db.fetchval("SELECT count(*) FROM scans")
        yield


@pytest.mark.parametrize("maintenance", ["days ahead", "retention"])
async def test_partition_ddl_gives_way_to_a_long_reader_rather_than_stall_ingest(
        maintenance: str, worker: IngestWorker, database_url: str, db: asyncpg.Connection[Any]) -> None:
    """Its ACCESS EXCLUSIVE lock request, queued behind the reader, queued every ingest COPY behind it in turn:
    one scan took 30 s (asyncpg's command timeout), and again the next hour."""
    await ingest(worker, TODAY - timedelta(days=10))
    await ingest(worker, TODAY - timedelta(days=1))
    other_worker = await create_pool(database_url, min_size=1, max_size=1)  # the one whose turn it is
    partitions = ScanPartitions(other_worker)
    try:
        async with long_reader(db):
            ddl = asyncio.create_task(partitions.ensure_ahead(TODAY) if maintenance == "days ahead"
                                      else partitions.drop_expired(7, TODAY))
            await asyncio.sleep(0.2)
            started = monotonic()
            await asyncio.wait_for(ingest(worker, TODAY - timedelta(days=1)), 10)
            took = monotonic() - started
            with pytest.raises(asyncpg.LockNotAvailableError):
                await ddl
    finally:
        await asyncio.gather(ddl, return_exceptions=True)
        await other_worker.close()
    assert took < 2, f"one scan took {took:.1f} s to ingest while partition DDL waited for a reader"
    assert TODAY - timedelta(days=10) in await partition_days(db)  # gave way: dropped nothing


async def test_partition_maintenance_that_gave_way_is_done_soon_after(
        monkeypatch: pytest.MonkeyPatch, worker: IngestWorker, db: asyncpg.Connection[Any]) -> None:
    monkeypatch.setattr(worker_module, "MAINTENANCE_RETRY_S", 0.1)
    today = datetime.now(UTC).date()
    await ingest(worker, today - timedelta(days=10))
    async with long_reader(db):
        await asyncio.wait_for(worker.periodic(), 5)
    assert await partition_days(db) == [today - timedelta(days=10)]
    await asyncio.sleep(0.2)  # not an hour
    await worker.periodic()
    days = await partition_days(db)
    assert days[0] == today - timedelta(days=1) and days[-1] == today + timedelta(days=DAYS_AHEAD)


async def test_the_worker_reports_throughput_and_lag(ingest_settings: IngestSettings, pool: asyncpg.Pool[Any],
                                                     redis: aioredis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    worker = IngestWorker(ingest_settings, pool, redis)
    await worker.ensure_group()
    with caplog.at_level(logging.INFO, logger="control_plane.ingest.worker"):
        await worker.report()
    assert "scans/s" in caplog.text and "lag 0" in caplog.text

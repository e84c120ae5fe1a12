from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from control_plane.ingest.partitions import DAYS_AHEAD, ScanPartitions
from control_plane.ingest.worker import IngestWorker
from shared.database import create_pool
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


async def test_the_worker_reports_throughput_and_lag(ingest_settings: IngestSettings, pool: asyncpg.Pool[Any],
                                                     redis: aioredis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    worker = IngestWorker(ingest_settings, pool, redis)
    await worker.ensure_group()
    with caplog.at_level(logging.INFO, logger="control_plane.ingest.worker"):
        await worker.report()
    assert "scans/s" in caplog.text and "lag 0" in caplog.text

"""Analytics with a PostgreSQL whose TimeZone is not UTC (initdb takes the host's zone by default): buckets and
retention are UTC days all the same (docs/api.md §4.2, docs/ingest.md)."""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from control_plane.api.app import create_app
from control_plane.ingest.worker import IngestWorker
from control_plane.services import analytics
from shared.database import connect, create_pool
from shared.settings import ControlPlaneSettings, IngestSettings
from tests.conftest import KeyFactory, _admin, bearer
from tests.control_plane.api.test_analytics import ingest, scan
from tests.control_plane.ingest.test_enrich import IPHONE_SAFARI

# Europe/Berlin leaves summer time on 2026-10-25 at 01:00 UTC.
AROUND_THE_CHANGE = {"since": "2026-10-24T00:00:00Z", "until": "2026-10-28T00:00:00Z"}


@pytest.fixture
async def zoned(request: pytest.FixtureRequest, database_url: str) -> str:
    """The test database, with a TimeZone of its own: Europe/Berlin unless the test parametrizes it."""
    zone = getattr(request, "param", "Europe/Berlin")
    name = database_url.rsplit("/", 1)[1]
    await _admin(f"ALTER DATABASE \"{name}\" SET timezone = '{zone}'")
    return database_url


@pytest.fixture
async def api(zoned: str, cp_settings: ControlPlaneSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(cp_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://cp.test") as client:
            yield client


@pytest.fixture
async def worker(zoned: str, ingest_settings: IngestSettings, redis: aioredis.Redis) -> AsyncIterator[IngestWorker]:
    pool = await create_pool(zoned, min_size=1, max_size=2)
    worker = IngestWorker(ingest_settings, pool, redis)
    await worker.ensure_group()
    yield worker
    await pool.close()


@pytest.fixture
async def code(api: httpx.AsyncClient, make_key: KeyFactory, db: asyncpg.Connection[Any]) -> dict[str, Any]:
    key = await make_key()
    code_id = (await api.post("/v1/qr-codes", headers=bearer(key), json={})).json()["id"]
    row = await db.fetchrow("SELECT id, org_id, group_id, livemode FROM qr_codes WHERE id = $1", code_id)
    return {**dict(row), "key": key}


async def test_every_connection_runs_in_utc_whatever_the_database_zone(zoned: str) -> None:
    pool = await create_pool(zoned, min_size=1, max_size=1)
    conn = await connect(zoned)
    try:
        assert await pool.fetchval("SHOW timezone") == "UTC"
        assert await conn.fetchval("SHOW timezone") == "UTC"
    finally:
        await conn.close()
        await pool.close()


async def test_daily_buckets_across_a_dst_change_keep_their_scans(
        api: httpx.AsyncClient, code: dict[str, Any], worker: IngestWorker) -> None:
    await ingest(worker, [scan(code, "2026-10-24T12:00:00", "v1", "i1", IPHONE_SAFARI),
                          scan(code, "2026-10-26T12:00:00", "v2", "i2", IPHONE_SAFARI),
                          scan(code, "2026-10-27T12:00:00", "v3", "i3", IPHONE_SAFARI)])
    response = await api.get(f"/v1/qr-codes/{code['id']}/scans", headers=bearer(code["key"]), params=AROUND_THE_CHANGE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["totals"]["total_scans"] == 3
    assert body["timeseries"] == [
        {"bucket": "2026-10-24T00:00:00Z", "scans": 1, "uniques": 1},
        {"bucket": "2026-10-25T00:00:00Z", "scans": 0, "uniques": 0},
        {"bucket": "2026-10-26T00:00:00Z", "scans": 1, "uniques": 1},
        {"bucket": "2026-10-27T00:00:00Z", "scans": 1, "uniques": 1},
    ]


async def test_the_bucket_series_is_utc_in_a_session_of_any_zone(
        zoned: str, code: dict[str, Any], worker: IngestWorker) -> None:
    """A pool not made by create_pool (its sessions in the database's zone) gets UTC days all the same."""
    await ingest(worker, [scan(code, "2026-10-26T12:00:00", "v2", "i2", IPHONE_SAFARI)])
    since, until = (datetime.fromisoformat(AROUND_THE_CHANGE[k]).astimezone(UTC) for k in ("since", "until"))
    pool = await asyncpg.create_pool(zoned, min_size=1, max_size=1)
    try:
        assert await pool.fetchval("SHOW timezone") == "Europe/Berlin"
        f = analytics.ScanFilter("code_id", code["id"], code["org_id"], code["livemode"], since, until)
        series = await analytics.bucket_counts(pool, f, "day")
    finally:
        await pool.close()
    assert [(bucket.isoformat(), scans) for bucket, scans in series] == [
        ("2026-10-24T00:00:00+00:00", 0), ("2026-10-25T00:00:00+00:00", 0),
        ("2026-10-26T00:00:00+00:00", 1), ("2026-10-27T00:00:00+00:00", 0)]


@pytest.mark.parametrize("zoned", ["America/New_York"], indirect=True)
async def test_retention_keeps_the_hourly_rows_of_the_days_it_keeps(
        api: httpx.AsyncClient, code: dict[str, Any], db: asyncpg.Connection[Any], worker: IngestWorker) -> None:
    await ingest(worker, [scan(code, "2026-04-02T12:00:00", "v1", "i1", IPHONE_SAFARI),   # older than retention
                          scan(code, "2026-04-03T02:00:00", "v2", "i2", IPHONE_SAFARI)])  # kept: its day is kept
    await worker.partitions.drop_expired(7, today=date(2026, 4, 10))  # cutoff 2026-04-03
    assert await db.fetchval("SELECT count(*) FROM scans") == 1
    response = await api.get(f"/v1/qr-codes/{code['id']}/scans", headers=bearer(code["key"]),
                             params={"since": "2026-04-03T00:00:00Z", "until": "2026-04-04T00:00:00Z"})
    body = response.json()
    assert body["totals"]["total_scans"] == 1
    assert body["timeseries"] == [{"bucket": "2026-04-03T00:00:00Z", "scans": 1, "uniques": 1}]

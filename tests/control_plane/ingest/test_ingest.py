from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
import uuid_utils

from control_plane.ingest.worker import IngestWorker
from shared.database import create_pool
from shared.keys import INGEST_GROUP, SCAN_FIELD, RedisKeys
from shared.scan_event import ScanEvent
from shared.settings import IngestSettings
from tests.conftest import KeyFactory, bearer


def scan(code_id: str, org_id: str, method: str = "GET") -> ScanEvent:
    scan_id = uuid_utils.uuid7()
    return ScanEvent(str(scan_id), scan_id.timestamp, code_id, None, org_id, True, "redirected", method, True,
                     "iphash", "visitorhash", "Mozilla/5.0", properties={"table": "1"})


@pytest.fixture
async def code(api: Any, make_key: KeyFactory, db: asyncpg.Connection[Any]) -> asyncpg.Record:
    key = await make_key()
    created = (await api.post("/v1/qr-codes", headers=bearer(key), json={})).json()
    return await db.fetchrow("SELECT id, org_id FROM qr_codes WHERE id = $1", created["id"])


@pytest.fixture
async def worker(ingest_settings: IngestSettings, database_url: str, redis: aioredis.Redis) -> Any:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    worker = IngestWorker(ingest_settings, pool, redis)
    await worker.ensure_group()
    yield worker
    await pool.close()


async def test_a_redelivered_batch_inserts_nothing_twice(worker: IngestWorker, code: asyncpg.Record,
                                                         db: asyncpg.Connection[Any]) -> None:
    events = [scan(code["id"], code["org_id"]) for _ in range(5)] + [scan(code["id"], code["org_id"], "HEAD")]
    entries = [(f"1-{i}".encode(), {SCAN_FIELD: e.encode()}) for i, e in enumerate(events)]
    assert await worker.ingest(entries) == 6
    assert await worker.ingest(entries) == 0
    assert await db.fetchval("SELECT count(*) FROM scans") == 6
    assert await db.fetchval("SELECT scan_count FROM qr_codes WHERE id = $1", code["id"]) == 5  # HEAD is a bot


async def test_worker_reads_the_stream_and_acknowledges_after_commit(
        worker: IngestWorker, code: asyncpg.Record, db: asyncpg.Connection[Any], redis: aioredis.Redis,
        redis_namespace: str) -> None:
    keys = RedisKeys(redis_namespace)
    for _ in range(20):
        await redis.xadd(keys.scans, {SCAN_FIELD: scan(code["id"], code["org_id"]).encode()})
    await redis.xadd(keys.scans, {SCAN_FIELD: b"not json"})
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    for _ in range(200):
        if await db.fetchval("SELECT count(*) FROM scans") == 20:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert await db.fetchval("SELECT scan_count FROM qr_codes WHERE id = $1", code["id"]) == 20
    pending = await redis.xpending(keys.scans, INGEST_GROUP)
    assert pending["pending"] == 0


async def test_a_batch_partly_stored_before_adds_only_its_new_scans(worker: IngestWorker, code: asyncpg.Record,
                                                                    db: asyncpg.Connection[Any]) -> None:
    events = [scan(code["id"], code["org_id"]) for _ in range(10)]
    entries = [(f"1-{i}".encode(), {SCAN_FIELD: e.encode()}) for i, e in enumerate(events)]
    assert await worker.ingest(entries[:4]) == 4
    assert await worker.ingest(entries) == 6  # a duplicate sends the batch through the staging table
    assert await db.fetchval("SELECT count(*) FROM scans") == 10
    assert await db.fetchval("SELECT scan_count FROM qr_codes WHERE id = $1", code["id"]) == 10
    assert await db.fetchval("SELECT sum(scans) FROM scan_hours WHERE code_id = $1", code["id"]) == 10
    metrics = worker.metrics.registry
    assert metrics.get_sample_value("scanroute_ingest_scans_stored_total") == 10
    assert metrics.get_sample_value("scanroute_ingest_duplicates_total") == 4


async def test_entries_with_more_fields_and_entries_deleted_while_pending_are_read(
        worker: IngestWorker, code: asyncpg.Record, db: asyncpg.Connection[Any], redis: aioredis.Redis,
        redis_namespace: str) -> None:
    keys = RedisKeys(redis_namespace)
    first = await redis.xadd(keys.scans, {"via": b"edge-2", SCAN_FIELD: scan(code["id"], code["org_id"]).encode()})
    second = await redis.xadd(keys.scans, {SCAN_FIELD: scan(code["id"], code["org_id"]).encode(), "via": b"edge-2"})
    assert [entry_id for entry_id, _ in await worker.stream.read(">", 10, None)] == [first, second]
    await redis.xdel(keys.scans, first)  # gone while pending: re-read without its fields
    pending = await worker.stream.read("0", 10, None)
    assert [fields for _, fields in pending] == [None, {SCAN_FIELD: pending[1][1][SCAN_FIELD], b"via": b"edge-2"}]
    assert await worker.ingest(pending) == 1
    assert await db.fetchval("SELECT scan_count FROM qr_codes WHERE id = $1", code["id"]) == 1


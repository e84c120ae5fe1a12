"""Write-through to Redis: version-checked, O(1) per group, repaired from the outbox when it was missed."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis

from control_plane.services.cache import EdgeCache
from control_plane.services.cache_sync import CacheSync, CacheSyncMetrics
from shared.database import create_pool
from shared.edge_rows import RowStore
from shared.keys import RedisKeys
from shared.rows import CodeRow, GroupRow
from tests.conftest import KeyFactory, bearer


async def test_an_older_row_never_replaces_a_newer_one(api: httpx.AsyncClient, make_key: KeyFactory,
                                                       redis: aioredis.Redis, redis_namespace: str) -> None:
    key = await make_key()
    code = (await api.post("/v1/qr-codes", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://one.example/"}})).json()
    keys = RedisKeys(redis_namespace)
    stored = CodeRow.decode(await redis.get(keys.code("qr.test", code["slug"])))
    await api.patch(f"/v1/qr-codes/{code['id']}", headers=bearer(key),
                    json={"destination": {"url": "https://two.example/"}})
    assert not await RowStore(redis, keys).store_code("qr.test", code["slug"], stored)
    current = CodeRow.decode(await redis.get(keys.code("qr.test", code["slug"])))
    assert current.version == stored.version + 1 and current.destination.url == "https://two.example/"


async def test_a_missed_write_through_is_repaired_from_the_outbox(
        api: httpx.AsyncClient, make_key: KeyFactory, db: asyncpg.Connection[Any], redis: aioredis.Redis,
        redis_namespace: str, database_url: str) -> None:
    key = await make_key()
    keys = RedisKeys(redis_namespace)
    pool = await create_pool(database_url)
    sync = CacheSync(pool, EdgeCache(redis, keys), redis_namespace)
    try:
        await sync.run_once()  # sets the cursor
        code = (await api.post("/v1/qr-codes", headers=bearer(key), json={
            "destination": {"type": "url", "url": "https://one.example/"}})).json()
        # A change committed with its event, whose write-through never happened (crash, Redis outage).
        await db.execute("UPDATE qr_codes SET destination_url = 'https://two.example/', version = version + 1"
                         " WHERE id = $1", code["id"])
        await db.execute("INSERT INTO events (id, org_id, livemode, type, data) SELECT 'evt_x', org_id, true,"
                         " 'qr.updated', jsonb_build_object('object', jsonb_build_object('id', id))"
                         " FROM qr_codes WHERE id = $1", code["id"])
        assert CodeRow.decode(await redis.get(keys.code("qr.test", code["slug"]))).destination.url \
            == "https://one.example/"
        applied = 0
        async with asyncio.timeout(30):  # another test's transaction, open in the same cluster, may hold the
            while applied < 2:  # sync's horizon back a moment (docs/freshness.md): later passes apply it
                applied += await sync.run_once()
        assert CodeRow.decode(await redis.get(keys.code("qr.test", code["slug"]))).destination.url \
            == "https://two.example/"
    finally:
        await pool.close()


async def test_a_deleted_group_leaves_a_final_tombstone(api: httpx.AsyncClient, make_key: KeyFactory,
                                                        redis: aioredis.Redis, redis_namespace: str) -> None:
    key = await make_key()
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://one.example/"}})).json()
    keys = RedisKeys(redis_namespace)
    before = GroupRow.decode(await redis.get(keys.group(group["id"])))
    await api.delete(f"/v1/qr-groups/{group['id']}", headers=bearer(key))
    assert not await RowStore(redis, keys).store_group(before)  # a late read-through cannot resurrect it
    tombstone = GroupRow.decode(await redis.get(keys.group(group["id"])))
    assert tombstone.destination.type is None and tombstone.status is None and tombstone.url_params == ()


async def test_the_cache_sync_lag_grows_while_a_transaction_holds_its_horizon(
        api: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis, redis_namespace: str,
        database_url: str) -> None:
    key = await make_key()
    pool = await create_pool(database_url)
    metrics = CacheSyncMetrics()
    sync = CacheSync(pool, EdgeCache(redis, RedisKeys(redis_namespace)), redis_namespace, metrics=metrics)

    def lag() -> float:
        value = metrics.registry.get_sample_value("scanroute_cache_sync_lag_seconds")
        assert value is not None
        return value

    holder = await asyncpg.connect(database_url)
    try:
        await sync.run_once()
        holding = holder.transaction()
        await holding.start()
        await holder.fetchval("SELECT pg_current_xact_id()")  # a transaction that has written: the horizon
        await api.post("/v1/qr-codes", headers=bearer(key), json={
            "destination": {"type": "url", "url": "https://one.example/"}})  # its event commits above it
        await sync.run_once()
        first = lag()
        await asyncio.sleep(1.2)
        assert await sync.run_once() == 0  # held back, not skipped
        assert lag() >= first + 1.0
        await holding.rollback()
        applied = 0
        async with asyncio.timeout(30):  # another transaction of the cluster may hold it a moment longer
            while applied == 0 or lag() >= 1.0:
                applied += await sync.run_once()
                await asyncio.sleep(0.1)
    finally:
        await holder.close()
        await pool.close()

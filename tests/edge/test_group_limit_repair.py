"""A group's `max_scans` change re-marks its codes and records a `qr.updated` for each code whose mark changed,
so a write-through of them lost to a Redis outage is re-applied by the cache sync (docs/freshness.md: it
"re-applies every event of the outbox"), instead of leaving Redis's old `expired` row trusted for good."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import asyncpg
import redis.asyncio as aioredis

from control_plane.ingest.counts import add_scans
from control_plane.ingest.expiry import ExpirySweep
from shared.database import create_pool
from shared.keys import RedisKeys
from tests.conftest import KeyFactory, bearer
from tests.edge.conftest import control_plane, edge_client, repair
from tests.edge.private_redis import PrivateRedis
from tests.edge.test_scan import make_code

HOST = {"host": "qr.test"}
READY_TIMEOUT = 15.0  # seconds for a started edge to trust Redis


async def test_a_group_limit_raised_while_redis_was_down_is_not_undone_by_the_repaired_redis(
        private_env: dict[str, str], private_redis: PrivateRedis, make_key: KeyFactory) -> None:
    key = await make_key()
    db = await create_pool(private_env["DATABASE_URL"], min_size=1, max_size=2)
    redis = aioredis.Redis.from_url(private_env["REDIS_URL"])
    try:
        async with control_plane(private_env) as api:
            group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
                "destination": {"type": "url", "url": "https://example.com/menu"}, "max_scans": 1})).json()
            code = await make_code(api, key, group_id=group["id"])
            # One human scan counted by the ingest worker reaches the group's limit; its expiry sweep publishes it.
            async with db.acquire() as proxy, proxy.transaction():
                await add_scans(cast("asyncpg.Connection[Any]", proxy), {code["id"]: 1})
            await ExpirySweep(db, redis, RedisKeys(private_env["REDIS_NAMESPACE"])).run_once()
            await repair(private_env, caught_up=True)
            async with edge_client(private_env) as (_, edge):
                assert (await edge.get(f"/{code['slug']}", headers=HOST)).status_code == 410  # expired

            await asyncio.to_thread(private_redis.stop)  # keeps its data (append-only file)
            patched = await api.patch(f"/v1/qr-groups/{group['id']}", headers=bearer(key), json={"max_scans": 100})
            assert patched.status_code == 200, patched.text  # committed; Redis marked for repair
            await asyncio.to_thread(private_redis.start)
            await redis.aclose()
            redis = aioredis.Redis.from_url(private_env["REDIS_URL"])
            await repair(private_env, caught_up=True)  # the cache sync re-applies the outbox, clears the mark
            assert await db.fetchval("SELECT pending_through FROM cache_repair") == 0

            async with edge_client(private_env) as (app, edge):  # an edge (re)started after the repair
                deadline = time.monotonic() + READY_TIMEOUT
                while not app.link.rows_readable:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
                truth = await db.fetchval("SELECT scan_limit_reached_at IS NOT NULL FROM qr_codes WHERE id = $1",
                                          code["id"])
                answer = (await edge.get(f"/{code['slug']}", headers=HOST)).status_code
                assert (truth, answer) == (False, 302), (truth, answer)
    finally:
        await redis.aclose()
        await db.close()

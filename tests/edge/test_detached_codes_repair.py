"""A group deleted while Redis was unreachable: its codes are detached (`group_id` null, a new `version`) without
an event each, and the cache sync still brings their Redis rows up to date once Redis is back — it re-applies
every code whose version changed, not only the codes an event names (docs/freshness.md, "The cache sync's
cursor"). Before, the rows kept the deleted group's id, and so did the edge's scan events (group analytics)."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from shared.database import create_pool
from shared.keys import RedisKeys
from shared.rows import CodeRow
from tests.conftest import KeyFactory, bearer
from tests.edge.conftest import control_plane, edge_client, repair
from tests.edge.private_redis import PrivateRedis
from tests.edge.test_scan import make_code, stream_events

HOST = {"host": "qr.test", "user-agent": "Mozilla/5.0"}
READY_TIMEOUT = 15.0  # seconds for a started edge to trust Redis


async def test_codes_of_a_group_deleted_while_redis_was_down_lose_its_id_in_redis_and_in_scans(
        private_env: dict[str, str], private_redis: PrivateRedis, make_key: KeyFactory) -> None:
    key = await make_key()
    namespace = private_env["REDIS_NAMESPACE"]
    keys = RedisKeys(namespace)
    db = await create_pool(private_env["DATABASE_URL"], min_size=1, max_size=2)
    redis = aioredis.Redis.from_url(private_env["REDIS_URL"])
    try:
        async with control_plane(private_env) as api:
            group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
                "destination": {"type": "url", "url": "https://example.com/menu"}})).json()
            own = await make_code(api, key, group_id=group["id"],
                                  destination={"type": "url", "url": "https://example.com/own"})
            inheriting = await make_code(api, key, group_id=group["id"])
            await repair(private_env, caught_up=True)
            codes = (own, inheriting)
            for code in codes:
                row = CodeRow.decode(await redis.get(keys.code(code["domain"], code["slug"])))
                assert row.group_id == group["id"]

            await asyncio.to_thread(private_redis.stop)  # keeps its data (append-only file)
            deleted = await api.delete(f"/v1/qr-groups/{group['id']}", headers=bearer(key))
            assert deleted.status_code == 204, deleted.text  # committed; Redis marked for repair
            await asyncio.to_thread(private_redis.start)
            await redis.aclose()
            redis = aioredis.Redis.from_url(private_env["REDIS_URL"])
            await repair(private_env, caught_up=True)  # the cache sync re-applies what changed, clears the mark
            assert await db.fetchval("SELECT pending_through FROM cache_repair") == 0

            for code in codes:
                row = CodeRow.decode(await redis.get(keys.code(code["domain"], code["slug"])))
                version = await db.fetchval("SELECT version FROM qr_codes WHERE id = $1", code["id"])
                assert (row.group_id, row.version) == (None, version), code["id"]

            async with edge_client(private_env) as (app, edge):  # an edge trusting the repaired Redis
                deadline = time.monotonic() + READY_TIMEOUT
                while not app.link.rows_readable:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
                await redis.delete(keys.scans)
                assert (await edge.get(f"/{own['slug']}", headers=HOST)).status_code == 302
                deadline = time.monotonic() + READY_TIMEOUT
                while not (events := await stream_events(redis, namespace)):
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
                assert [(e.code_id, e.group_id) for e in events] == [(own["id"], None)]  # before: the deleted group's
    finally:
        await redis.aclose()
        await db.close()

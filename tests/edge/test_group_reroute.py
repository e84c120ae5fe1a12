"""docs/api.md §3.2: re-routing a group touches a constant number of cache entries, whatever its size."""

from __future__ import annotations

from typing import Any

import asyncpg
import redis.asyncio as aioredis

from tests.conftest import KeyFactory, bearer
from tests.edge.conftest import control_plane, edge_client


async def commands_run(redis: aioredis.Redis) -> int:
    stats: dict[str, dict[str, Any]] = await redis.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info",))


async def add_codes(db: asyncpg.Connection[Any], group_id: str, count: int, prefix: str) -> None:
    org_id = await db.fetchval("SELECT org_id FROM qr_groups WHERE id = $1", group_id)
    await db.execute(
        "INSERT INTO qr_codes (id, org_id, livemode, kind, type, slug, domain, group_id)"
        " SELECT $3 || g, $1, true, 'dynamic', 'url', $3 || g, 'qr.test', $2 FROM generate_series(1, $4) g",
        org_id, group_id, prefix, count)


async def test_a_group_of_10000_codes_is_rerouted_with_as_many_redis_commands_as_a_group_of_10(
        private_env: dict[str, str], make_key: KeyFactory, db: asyncpg.Connection[Any]) -> None:
    key = await make_key()
    redis = aioredis.Redis.from_url(private_env["REDIS_URL"])  # the test's own server: nobody else counts
    try:
        async with control_plane(private_env) as api:
            cost = {}
            for size in (10, 10_000):
                group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
                    "destination": {"type": "url", "url": "https://before.example/"}})).json()
                await add_codes(db, group["id"], size, f"g{size}x")
                before = await commands_run(redis)
                patched = await api.patch(f"/v1/qr-groups/{group['id']}", headers=bearer(key),
                                          json={"destination": {"url": f"https://after{size}.example/"}})
                assert patched.status_code == 200
                cost[size] = await commands_run(redis) - before
        # The same small number either way: the API key's rate-limit bucket (a script of 3 commands), the
        # group row (a version-checked script), one invalidation entry, and the edge registry's check.
        assert 1 <= cost[10_000] == cost[10] <= 20, cost
        async with edge_client(private_env) as (_, edge):
            for n in (1, 5_000, 10_000):
                response = await edge.get(f"/g10000x{n}")
                assert response.headers["location"] == "https://after10000.example/"
    finally:
        await redis.aclose()

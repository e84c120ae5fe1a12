"""docs/security.md: a row written into Redis by something other than scanroute — here with a version far
ahead of the database's, as a local user who could write Redis did — never outlives the next write of its
code or group, nor the cache sync's audit."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import asyncpg
import httpx
import msgspec.structs
import redis.asyncio as aioredis

from control_plane.services.cache import EdgeCache
from control_plane.services.cache_audit import CacheAudit
from edge.app import EdgeApp
from shared.database import create_pool
from shared.edge_rows import load_code_by_slug, load_groups
from shared.keys import RedisKeys
from shared.rows import CodeRow, Destination, GroupRow
from tests.conftest import KeyFactory, bearer
from tests.edge.test_freshness import wait_for_location
from tests.edge.test_scan import make_code

PLANTED = "https://attacker.example/"
AHEAD = 10**9


async def plant_code(redis: aioredis.Redis, keys: RedisKeys, db: asyncpg.Connection[Any], slug: str,
                     version: int = AHEAD, domain: str = "qr.test") -> bytes:
    row = await load_code_by_slug(db, "qr.test", slug)
    assert row is not None
    planted = msgspec.structs.replace(row, version=version, destination=Destination("url", PLANTED)).encode()
    await redis.set(keys.code(domain, slug), planted)
    return planted


async def audit_walk(database_url: str, redis: aioredis.Redis, keys: RedisKeys) -> int:
    """One full walk of the cache audit over the namespace: how many rows it replaced."""
    pool = await create_pool(database_url)
    try:
        audit = CacheAudit(pool, EdgeCache(redis, keys), slice=100)
        repaired = await audit.run_once()
        while audit.cursor:
            repaired += await audit.run_once()
        return repaired
    finally:
        await pool.close()


async def test_a_code_row_ahead_of_the_database_is_replaced_by_the_next_patch(
        api: httpx.AsyncClient, edge: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str, db: asyncpg.Connection[Any]) -> None:
    key = await make_key()
    keys = RedisKeys(redis_namespace)
    code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/one"})
    await plant_code(redis, keys, db, code["slug"])
    assert (await edge.get(f"/{code['slug']}")).headers["location"] == PLANTED  # what the attack did

    patched = await api.patch(f"/v1/qr-codes/{code['id']}", headers=bearer(key),
                              json={"destination": {"url": "https://example.com/two"}})
    assert patched.status_code == 200
    assert (await edge.get(f"/{code['slug']}")).headers["location"] == "https://example.com/two"
    stored = CodeRow.decode(await redis.get(keys.code("qr.test", code["slug"])))
    assert stored.version == patched.json()["version"] and stored.destination.url == "https://example.com/two"


async def test_a_group_row_ahead_of_the_database_is_replaced_by_the_next_patch(
        api: httpx.AsyncClient, edge: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str) -> None:
    key = await make_key()
    keys = RedisKeys(redis_namespace)
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://example.com/g1"}})).json()
    code = await make_code(api, key, group_id=group["id"])
    held = GroupRow.decode(await redis.get(keys.group(group["id"])))
    await redis.set(keys.group(group["id"]),
                    dataclasses.replace(held, version=AHEAD, destination=Destination("url", PLANTED)).encode())
    assert (await edge.get(f"/{code['slug']}")).headers["location"] == PLANTED

    patched = await api.patch(f"/v1/qr-groups/{group['id']}", headers=bearer(key),
                              json={"destination": {"url": "https://example.com/g2"}})
    assert patched.status_code == 200
    assert (await edge.get(f"/{code['slug']}")).headers["location"] == "https://example.com/g2"


async def test_the_audit_replaces_planted_rows_without_any_write(
        api: httpx.AsyncClient, edge: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str, db: asyncpg.Connection[Any], database_url: str) -> None:
    key = await make_key()
    keys = RedisKeys(redis_namespace)
    ahead = await make_code(api, key, destination={"type": "url", "url": "https://example.com/ahead"})
    level = await make_code(api, key, destination={"type": "url", "url": "https://example.com/level"})
    honest = await make_code(api, key, destination={"type": "url", "url": "https://example.com/honest"})
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://example.com/g"}})).json()
    member = await make_code(api, key, group_id=group["id"])
    await plant_code(redis, keys, db, ahead["slug"])
    await plant_code(redis, keys, db, level["slug"], version=level["version"])  # at the database's version
    await plant_code(redis, keys, db, honest["slug"], domain="qr.other")  # a (domain, slug) with no code
    honest_row = await redis.get(keys.code("qr.test", honest["slug"]))
    group_row = (await load_groups(db, [group["id"]]))[group["id"]]
    await redis.set(keys.group(group["id"]), dataclasses.replace(
        group_row, version=AHEAD, destination=Destination("url", PLANTED)).encode())
    for slug in (ahead["slug"], level["slug"], member["slug"]):
        assert (await edge.get(f"/{slug}")).headers["location"] == PLANTED

    assert await audit_walk(database_url, redis, keys) == 4
    await wait_for_location(edge, ahead["slug"], "https://example.com/ahead")
    await wait_for_location(edge, level["slug"], "https://example.com/level")
    await wait_for_location(edge, member["slug"], "https://example.com/g")
    assert not await redis.exists(keys.code("qr.other", honest["slug"]))
    assert await redis.get(keys.code("qr.test", honest["slug"])) == honest_row  # an honest row is left alone


async def test_a_group_row_planted_at_the_database_version_gives_way_to_the_audit(
        api: httpx.AsyncClient, edge: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str, db: asyncpg.Connection[Any], database_url: str) -> None:
    """Other contents at the same version: the edge reads the repaired row, and must not answer with what it
    had prepared from the planted one."""
    key = await make_key()
    keys = RedisKeys(redis_namespace)
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://example.com/g"}})).json()
    member = await make_code(api, key, group_id=group["id"])
    group_row = (await load_groups(db, [group["id"]]))[group["id"]]
    await redis.set(keys.group(group["id"]), dataclasses.replace(
        group_row, destination=Destination("url", PLANTED)).encode())
    assert (await edge.get(f"/{member['slug']}")).headers["location"] == PLANTED

    assert await audit_walk(database_url, redis, keys) == 1
    await wait_for_location(edge, member["slug"], "https://example.com/g")


async def test_a_code_row_that_cannot_be_resolved_answers_503_on_every_scan(
        api: httpx.AsyncClient, edge: httpx.AsyncClient, edge_app: EdgeApp, make_key: KeyFactory,
        redis: aioredis.Redis, redis_namespace: str, db: asyncpg.Connection[Any]) -> None:
    """A row in Redis whose routing cannot be compiled (written by another version, or planted): its scans
    answer 503 — on a cache miss and on every hit after it — and the connection goes on serving."""
    key = await make_key()
    keys = RedisKeys(redis_namespace)
    bad = await make_code(api, key, destination={"type": "url", "url": "https://example.com/bad"})
    good = await make_code(api, key, destination={"type": "url", "url": "https://example.com/good"})
    row = await load_code_by_slug(db, "qr.test", bad["slug"])
    assert row is not None
    await redis.set(keys.code("qr.test", bad["slug"]), msgspec.structs.replace(row, routing="{not json").encode())
    hits = edge_app.codes.hits
    for _ in range(20):  # the first a miss; then hits of the cached row, once the local cache may answer
        assert (await edge.get(f"/{bad['slug']}")).status_code == 503
        if edge_app.codes.hits > hits + 2:
            break
        await asyncio.sleep(0.05)
    assert edge_app.codes.hits > hits + 2
    answer = await edge.get(f"/{good['slug']}")  # on the same connection
    assert answer.status_code == 302 and answer.headers["location"] == "https://example.com/good"

"""docs/api.md §3.2 inside one edge process: the local cache follows the invalidation stream, and a write's
2xx is never followed by the old answer (no grace period: the write waited for this edge to confirm)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import asyncpg
import httpx
import msgspec.structs
import redis
import redis.asyncio as aioredis

from edge.app import EdgeApp
from edge.invalidations import NO_ID, InvalidationFollower
from edge.local_cache import Fence, LocalCache
from shared.edge_rows import RowStore, load_code_by_slug
from shared.keys import INVALIDATION_FIELD, RedisKeys
from shared.rows import Destination
from tests.conftest import KeyFactory, bearer
from tests.edge.conftest import control_plane, edge_client
from tests.edge.test_scan import make_code


async def wait_for_location(edge: httpx.AsyncClient, slug: str, expected: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while (location := (await edge.get(f"/{slug}")).headers.get("location")) != expected:
        assert time.monotonic() < deadline, f"still {location}, expected {expected}"
        await asyncio.sleep(0.05)


async def test_a_slug_created_after_a_404_resolves_at_once(
        api: httpx.AsyncClient, edge: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    assert (await edge.get("/table-12")).status_code == 404  # now cached as unknown
    await make_code(api, key, slug="table-12", destination={"type": "url", "url": "https://example.com/t12"})
    response = await edge.get("/table-12")
    assert response.status_code == 302 and response.headers["location"] == "https://example.com/t12"


async def test_repeated_scans_are_served_from_the_local_cache(
        api: httpx.AsyncClient, edge: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str, db: asyncpg.Connection[Any]) -> None:
    key = await make_key()
    code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/c"})
    await edge.get(f"/{code['slug']}")
    # Redis now holds another row without telling anyone: only a cached row explains the old answer.
    await store_newer_row(redis, RedisKeys(redis_namespace), db, code["slug"], "https://example.com/other")
    assert (await edge.get(f"/{code['slug']}")).headers["location"] == "https://example.com/c"
    metrics = (await edge.get("/metrics")).text
    assert 'scanroute_edge_cache_hits_total{kind="code"} 1.0' in metrics
    assert 'scanroute_edge_requests_total{outcome="redirected"} 2.0' in metrics


async def store_newer_row(redis: aioredis.Redis, keys: RedisKeys, db: asyncpg.Connection[Any], slug: str,
                          url: str) -> None:
    row = await load_code_by_slug(db, "qr.test", slug)
    assert row is not None
    newer = msgspec.structs.replace(row, version=row.version + 1, destination=Destination("url", url))
    await RowStore(redis, keys).store_code("qr.test", slug, newer)


async def test_a_lost_invalidation_stream_clears_the_local_cache(
        api: httpx.AsyncClient, edge: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str, db: asyncpg.Connection[Any]) -> None:
    key = await make_key()
    code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/old"})
    assert (await edge.get(f"/{code['slug']}")).headers["location"] == "https://example.com/old"
    keys = RedisKeys(redis_namespace)
    await store_newer_row(redis, keys, db, code["slug"], "https://example.com/new")  # changed silently…
    await redis.delete(keys.invalidations)  # …and the stream that would have said so is gone
    await wait_for_location(edge, code["slug"], "https://example.com/new")


async def test_after_flushall_every_code_still_resolves(private_env: dict[str, str], make_key: KeyFactory) -> None:
    key = await make_key()
    async with control_plane(private_env) as api, edge_client(private_env) as (_, edge):
        group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
            "destination": {"type": "url", "url": "https://example.com/g"}, "url_params": {"a": "1"}})).json()
        codes = [await make_code(api, key, group_id=group["id"]) for _ in range(3)]
        redis = aioredis.Redis.from_url(private_env["REDIS_URL"])
        try:
            await redis.flushall()
            for code in codes:
                response = await edge.get(f"/{code['slug']}?b=2")
                assert response.headers["location"] == "https://example.com/g?a=1&b=2"
            keys = RedisKeys(private_env["REDIS_NAMESPACE"])
            assert await redis.exists(*(keys.code("qr.test", c["slug"]) for c in codes)) == 3  # read through
        finally:
            await redis.aclose()


async def test_minting_10000_codes_appends_one_invalidation_and_keeps_the_edge_cache(
        api: httpx.AsyncClient, edge: httpx.AsyncClient, edge_app: EdgeApp, make_key: KeyFactory,
        redis: aioredis.Redis, redis_namespace: str) -> None:
    key = await make_key()
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://example.com/g"}})).json()
    code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/kept"})
    await edge.get(f"/{code['slug']}")
    stream = RedisKeys(redis_namespace).invalidations
    before = await redis.xlen(stream)
    minted = await api.post(f"/v1/qr-groups/{group['id']}/codes", headers=bearer(key), json={"count": 10_000})
    assert minted.status_code == 201
    assert await redis.xlen(stream) == before + 1
    hits = edge_app.codes.hits
    assert (await edge.get(f"/{code['slug']}")).headers["location"] == "https://example.com/kept"
    assert edge_app.codes.hits == hits + 1  # still answered from the local cache
    newest = minted.json()["data"][-1]
    assert (await edge.get(f"/{newest['slug']}")).headers["location"] == "https://example.com/g"


async def test_readyz_shows_the_read_your_writes_state(edge: httpx.AsyncClient) -> None:
    freshness = (await edge.get("/readyz")).json()["freshness"]
    assert freshness["applied_position"] is not None and freshness["redis_rows"] == "current"
    assert freshness["local_cache"] in ("fresh", "fenced") and freshness["stale_answers"] == 0
    metrics = (await edge.get("/metrics")).text
    assert "scanroute_edge_local_cache_fresh" in metrics and "scanroute_edge_invalidation_lag_seconds" in metrics


async def test_entries_trimmed_before_a_follower_starting_at_the_beginning_read_them_clear_its_cache(
        redis_namespace: str) -> None:
    """A follower that found no stream reads it from 0-0; entries trimmed off before its first read were
    missed all the same (a burst of writes, or the follower's thread held up) and its cache stops counting."""
    keys = RedisKeys(redis_namespace)
    cache: LocalCache[str] = LocalCache(100, 60.0, 60.0)
    follower = InvalidationFollower(os.environ["REDIS_URL"], keys, [cache], Fence(), "edge-trimmed",
                                    lambda _: None, confirm=False)
    writer = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        follower._connect()  # no stream yet: it will read from the beginning
        assert follower.last_id == NO_ID
        generation = cache.generation
        for n in range(20):  # the entries naming the first keys are trimmed off before the follower reads
            writer.xadd(keys.invalidations, {INVALIDATION_FIELD: f"{redis_namespace}:code:{n}"}, maxlen=5,
                        approximate=False)
        follower._follow_once()
        assert cache.generation != generation  # nothing cached before counts
        assert follower.last_id != NO_ID
        generation = cache.generation
        writer.xadd(keys.invalidations, {INVALIDATION_FIELD: f"{redis_namespace}:code:next"}, maxlen=5,
                    approximate=False)
        follower._follow_once()
        assert cache.generation == generation  # read in order from there: nothing more was missed

        writer.delete(keys.invalidations)
        follower.last_id = None
        follower._connect()  # no stream again, and then one trimmed empty before the first read
        for n in range(3):
            writer.xadd(keys.invalidations, {INVALIDATION_FIELD: f"{redis_namespace}:code:{n}"}, maxlen=0,
                        approximate=False)
        generation = cache.generation
        follower._follow_once()
        assert cache.generation != generation
        generation = cache.generation
        follower._follow_once()
        assert cache.generation == generation  # once: it follows on after the last id the stream had
    finally:
        writer.close()
        follower.redis.close()

"""The filter of existing codes (docs/freshness.md, docs/edge.md): unknown slugs cost no read and leave no cache
entry, while a code created, minted, imported or moved to another domain answers 302 at once on every edge
process, and a Redis that lost the filter never causes a false 404."""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis

from control_plane.jobs.worker import start_worker
from control_plane.services.cache import EdgeCache
from control_plane.services.cache_sync import CacheSync
from edge.app import EdgeApp
from shared.code_filter import FilterCopy, bits_for, empty
from shared.database import create_pool
from shared.keys import RedisKeys
from shared.settings import ControlPlaneSettings, JobSettings
from tests.conftest import KeyFactory, bearer
from tests.control_plane.jobs.conftest import run_job
from tests.edge.conftest import control_plane, edge_client
from tests.edge.private_redis import PrivateRedis
from tests.edge.test_scan import make_code

HOST = {"host": "qr.test"}


async def sync_once(env: dict[str, str]) -> bool:
    """One pass of the control plane's cache sync, as its loop runs it (the tests' control planes do not):
    the outbox, then the filter (built when Redis has none). Returns whether it built a filter."""
    redis = aioredis.Redis.from_url(env["REDIS_URL"])
    db = await asyncpg.create_pool(env["DATABASE_URL"], min_size=1, max_size=2)
    try:
        sync = CacheSync(db, EdgeCache(redis, RedisKeys(env["REDIS_NAMESPACE"])), env["REDIS_NAMESPACE"])
        await sync.run_once()
        return await sync.code_filter.run_once()
    finally:
        await db.close()
        await redis.aclose()


async def trusted(*apps: EdgeApp, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(app.code_filter.trusted() for app in apps):
        assert time.monotonic() < deadline, [app.metrics.code_filter_state() for app in apps]
        await asyncio.sleep(0.02)


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert found, name
    return float(found.group(1))


async def seen(edge: httpx.AsyncClient) -> dict[str, float]:
    """What an operator sees in /metrics about lookups and the code cache."""
    text = (await edge.get("/metrics")).text
    return {name: metric(text, name) for name in (
        'scanroute_edge_cache_misses_total{kind="code"}', 'scanroute_edge_cache_entries{kind="code"}',
        'scanroute_edge_cache_bytes{kind="code"}', "scanroute_edge_code_filter_answers_total",
        "scanroute_edge_code_filter_trusted", "scanroute_edge_code_filter_bypassed_total")}


async def redis_reads(client: aioredis.Redis) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("mget", "get")}


async def test_the_control_planes_bits_are_the_edges_bits(redis: aioredis.Redis, redis_namespace: str) -> None:
    """Positions computed in Lua (writers) and in Python (edges) agree; about 1 % false positives at capacity."""
    keys = RedisKeys(redis_namespace)
    cache = EdgeCache(redis, keys)
    await redis.set(keys.code_filter, empty(bits_for(5000), 7))
    known = [(f"h{i % 7}.example:8{i % 3}", secrets.token_urlsafe(6)) for i in range(5000)]
    assert await cache.code_filter.add(known) > 0
    assert await cache.code_filter.add(known[:100]) == 0  # idempotent: nothing new to announce
    copy = FilterCopy(await redis.get(keys.code_filter))
    assert copy.generation == 7 and all(copy.may_contain(d, s) for d, s in known)
    positives = sum(copy.may_contain("h1.example:81", f"unknown-{i}") for i in range(10_000))
    assert positives < 300  # 1 % expected


@asynccontextmanager
async def edges(env: dict[str, str]) -> AsyncIterator[list[tuple[EdgeApp, httpx.AsyncClient]]]:
    """Two edge processes' worth (their own caches, followers and filters): one per server kind."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(edge_client(env, kind)) for kind in ("protocol", "asgi")]


def counting(apps: list[EdgeApp]) -> list[tuple[int, int]]:
    """Per edge process: lookups made without the filter, and contacts made with Redis (a loss of contact makes
    an edge load the filter again and check it: reads that are not the flood's)."""
    return [(app.code_filter.bypassed, app.code_filter.link.contacts) for app in apps]


async def flood(edge: httpx.AsyncClient, apps: list[EdgeApp], redis: aioredis.Redis,
                ) -> tuple[dict[str, float], dict[str, float], dict[str, int]]:
    """1,000 distinct unknown slugs at once: /metrics before and after, and the reads Redis served meanwhile.

    The filter counts only while the follower keeps the fence open (docs/freshness.md); a round in which it
    stopped counting on any edge (a machine that stalls a follower's thread past half a lease) looks slugs up
    by design, which `scanroute_edge_code_filter_bypassed_total` shows. Such a round is repeated, up to 5 times."""
    for _ in range(5):
        state = counting(apps)
        before, reads = await seen(edge), await redis_reads(redis)
        answers = await asyncio.gather(*(edge.get(f"/x{i}-{secrets.token_hex(8)}", headers=HOST)
                                         for i in range(1000)))
        assert {a.status_code for a in answers} == {404}
        after = await seen(edge)
        if counting(apps) == state:
            return before, after, {name: calls - reads[name] for name, calls in (await redis_reads(redis)).items()}
        await trusted(*apps)
    raise AssertionError("the filter stopped counting in each of 5 rounds")


async def test_a_flood_of_distinct_unknown_slugs_reads_nothing_and_caches_nothing(
        private_env: dict[str, str], make_key: KeyFactory) -> None:
    key = await make_key()
    async with control_plane(private_env) as api:
        code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/known"})
        assert await sync_once(private_env)
        redis = aioredis.Redis.from_url(private_env["REDIS_URL"])
        try:
            async with edges(private_env) as both:
                apps = [app for app, _ in both]
                await trusted(*apps)
                for app, edge in both:
                    assert (await edge.get(f"/{code['slug']}", headers=HOST)).status_code == 302
                    before, after, reads = await flood(edge, apps, redis)
                    assert after["scanroute_edge_code_filter_answers_total"] >= before[
                        "scanroute_edge_code_filter_answers_total"] + 990  # ~1 % false positives are looked up
                    looked_up = after['scanroute_edge_cache_misses_total{kind="code"}'] - before[
                        'scanroute_edge_cache_misses_total{kind="code"}']
                    assert looked_up <= 10 and looked_up + after["scanroute_edge_code_filter_answers_total"] - before[
                        "scanroute_edge_code_filter_answers_total"] == 1000
                    assert reads["mget"] <= looked_up and reads["get"] == 0  # a false positive costs one MGET
                    assert after["scanroute_edge_code_filter_bypassed_total"] == app.code_filter.bypassed  # shown
                    assert after['scanroute_edge_cache_entries{kind="code"}'] <= before[
                        'scanroute_edge_cache_entries{kind="code"}'] + looked_up
                    assert app.metrics.code_filter_state()["bytes"] > 100_000  # counted and shown (~117 KiB)
        finally:
            await redis.aclose()


async def test_created_minted_and_imported_codes_answer_302_at_once_on_every_edge(
        env: dict[str, str], make_key: KeyFactory, cp_settings: ControlPlaneSettings) -> None:
    key = await make_key()
    assert await sync_once(env)
    redis = aioredis.Redis.from_url(env["REDIS_URL"])
    db = await create_pool(env["DATABASE_URL"], min_size=1, max_size=4)
    try:
        worker = await start_worker(JobSettings(control_plane=cp_settings, poll_interval=0.05, lease=60.0), db, redis)
        async with control_plane(env) as api, edges(env) as both:
            apps = [app for app, _ in both]
            await trusted(*apps)

            async def everywhere(slugs: list[str], what: str) -> None:
                for app, edge in both:
                    assert app.code_filter.trusted(), what  # answered by the filter's side, not a fallback
                    answers = await asyncio.gather(*(edge.get(f"/{slug}", headers=HOST) for slug in slugs))
                    assert [a.status_code for a in answers] == [302] * len(slugs), what

            created = await make_code(api, key, destination={"type": "url", "url": "https://example.com/one"})
            await everywhere([created["slug"]], "created")
            upserted = await api.post("/v1/qr-codes/upsert", headers=bearer(key), json={
                "destination": {"type": "url", "url": "https://example.com/upserted"}})
            assert upserted.status_code == 201, upserted.text
            await everywhere([upserted.json()["slug"]], "upserted")
            group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
                "destination": {"type": "url", "url": "https://example.com/menu"}})).json()
            minted = await api.post(f"/v1/qr-groups/{group['id']}/codes", headers=bearer(key), json={"count": 1000})
            assert minted.status_code == 201, minted.text
            await everywhere([c["slug"] for c in minted.json()["data"]], "minted")
            started = await api.post("/v1/imports", headers={**bearer(key), "Content-Type": "text/csv"},
                                     content=b"name,url\n" + b"".join(b"Imported %d,https://example.com/t/%d\n" % (n, n)
                                                                      for n in range(50)))
            assert started.status_code == 202, started.text
            job = await run_job(api, worker, key, f"/v1/imports/{started.json()['id']}")
            assert job["status"] == "succeeded", job
            imported = (await api.get("/v1/qr-codes?q=Imported&limit=100", headers=bearer(key))).json()["data"]
            assert len(imported) == 50
            await everywhere([c["slug"] for c in imported], "imported")
            unknown = [f"nope-{i}" for i in range(50)]
            for app, edge in both:
                answers = await asyncio.gather(*(edge.get(f"/{slug}", headers=HOST) for slug in unknown))
                assert {a.status_code for a in answers} == {404}
                assert app.code_filter.answered >= 45
    finally:
        await db.close()
        await redis.aclose()


async def test_a_code_given_another_domain_is_reachable_there_at_once(
        env: dict[str, str], make_key: KeyFactory, database_url: str) -> None:
    key = await make_key()
    assert await sync_once(env)
    redis = aioredis.Redis.from_url(env["REDIS_URL"])
    db = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        async with control_plane(env) as api, edges(env) as both:
            code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/moved"})
            assert (await api.post("/v1/domains", headers=bearer(key), json={"hostname": "go.example"})).status_code \
                == 201
            await trusted(*(app for app, _ in both))
            for _, edge in both:  # "unknown" on the new domain, before the move
                assert (await edge.get(f"/{code['slug']}", headers={"host": "go.example"})).status_code == 404
            # No API call moves a code (docs/api.md: its domain never changes once printed); an operator's
            # migration would, and ends in the write-through every write path ends in.
            await db.execute("UPDATE qr_codes SET domain = 'go.example', version = version + 1 WHERE id = $1",
                             code["id"])
            await EdgeCache(redis, RedisKeys(env["REDIS_NAMESPACE"])).publish_codes(db, [code["id"]])
            for app, edge in both:
                assert app.code_filter.trusted()
                response = await edge.get(f"/{code['slug']}", headers={"host": "go.example"})
                assert response.status_code == 302 and response.headers["location"] == "https://example.com/moved"
    finally:
        await db.close()
        await redis.aclose()


async def test_a_redis_that_lost_the_filter_causes_no_false_404_until_it_is_rebuilt(
        private_env: dict[str, str], private_redis: PrivateRedis, make_key: KeyFactory) -> None:
    key = await make_key()
    env = private_env
    async with control_plane(env) as api, edges(env) as both:
        apps = [app for app, _ in both]
        assert await sync_once(env)
        await trusted(*apps)
        # The control plane's write-through has seen the filter (its cache sync's loop would have, too).
        before = await make_code(api, key, destination={"type": "url", "url": "https://example.com/before"})
        # Flushed: rows, stream, cursor, edge registry and filter gone at once. The next write cannot wait for
        # the edges' confirmations (their registry is gone): it waits until their fences have closed.
        redis = aioredis.Redis.from_url(env["REDIS_URL"])
        try:
            await redis.flushall()
        finally:
            await redis.aclose()
        during = await make_code(api, key, destination={"type": "url", "url": "https://example.com/during"})
        await check_fallback(both, [before, during])
        assert await sync_once(env)  # the cursor again, and the filter rebuilt from PostgreSQL
        await trusted(*apps)
        await check_filter(both, [before, during])
        # Restarted empty (no persistence): the same again, through a reconnection.
        await asyncio.to_thread(private_redis.stop)
        shutil.rmtree(private_redis.folder)
        await asyncio.to_thread(private_redis.start)
        after = await make_code(api, key, destination={"type": "url", "url": "https://example.com/after"})
        await wait_up(apps)
        await check_fallback(both, [before, during, after])
        assert await sync_once(env)
        await trusted(*apps)
        await check_filter(both, [before, during, after])


async def check_fallback(both: list[tuple[EdgeApp, httpx.AsyncClient]], codes: list[dict[str, Any]]) -> None:
    for app, edge in both:
        assert not app.code_filter.trusted()
        for code in codes:
            assert (await edge.get(f"/{code['slug']}", headers=HOST)).status_code == 302
        answered, misses = app.code_filter.answered, app.codes.misses
        assert (await edge.get(f"/unheard-{secrets.token_hex(6)}", headers=HOST)).status_code == 404
        assert app.code_filter.answered == answered and app.codes.misses > misses  # looked up, as before


async def check_filter(both: list[tuple[EdgeApp, httpx.AsyncClient]], codes: list[dict[str, Any]]) -> None:
    for app, edge in both:
        for code in codes:
            assert (await edge.get(f"/{code['slug']}", headers=HOST)).status_code == 302
        answered = app.code_filter.answered
        for _ in range(20):
            assert (await edge.get(f"/unknown-{secrets.token_hex(6)}", headers=HOST)).status_code == 404
        assert app.code_filter.answered >= answered + 15  # about 1 % are false positives, looked up


async def test_a_redis_restored_from_an_older_file_is_not_believed_until_the_outbox_is_reapplied(
        private_env: dict[str, str], private_redis: PrivateRedis, make_key: KeyFactory, tmp_path: Path) -> None:
    """Its filter lacks the codes created since the file was written, though no write ever failed: the cache
    sync's cursor (as old as the file) says so, and the filter counts again once the outbox is re-applied."""
    key = await make_key()
    env = private_env
    async with control_plane(env) as api, edges(env) as both:
        apps = [app for app, _ in both]
        assert await sync_once(env)
        await trusted(*apps)
        await asyncio.to_thread(private_redis.stop)
        shutil.copytree(private_redis.folder, tmp_path / "older")
        await asyncio.to_thread(private_redis.start)
        await wait_up(apps)
        await trusted(*apps)
        since = await make_code(api, key, destination={"type": "url", "url": "https://example.com/since"})
        await check_filter(both, [since])
        await asyncio.to_thread(private_redis.stop)
        shutil.rmtree(private_redis.folder)
        shutil.copytree(tmp_path / "older", private_redis.folder)
        await asyncio.to_thread(private_redis.start)
        await wait_up(apps)
        for _ in range(5):  # the repair check runs every 0.2 s: it must not let the old filter count
            await check_fallback(both, [since])
            await asyncio.sleep(0.1)
        assert not await sync_once(env)  # re-applies the outbox (`since` back in the filter); no rebuild
        await trusted(*apps)
        await check_filter(both, [since])


async def wait_up(apps: list[EdgeApp]) -> None:
    deadline = time.monotonic() + 15
    while not all(app.link.up for app in apps):
        assert time.monotonic() < deadline, "the edges did not reconnect"
        await asyncio.sleep(0.05)

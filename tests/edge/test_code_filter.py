"""The filter of existing codes (docs/freshness.md, docs/edge.md): unknown slugs cost no read and leave no cache
entry, while a code created, minted, imported or moved to another domain answers 302 at once on every edge
process, and a Redis that lost the filter never causes a false 404."""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from control_plane.jobs.worker import start_worker
from control_plane.services.cache import EdgeCache
from control_plane.services.cache_sync import CacheSync
from control_plane.services.code_filter import CodeFilterKeeper
from edge.app import EdgeApp
from edge.code_filter import CodeFilter
from edge.local_cache import Fence
from edge.redis_link import RedisLink
from shared.code_filter import DELTA_KEYS, FilterCopy, bits_for, empty, encode_delta
from shared.database import create_pool
from shared.edge_rows import load_codes
from shared.keys import INVALIDATION_FIELD, NEGATIVE_ENTRIES, RedisKeys
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
    assert await cache.code_filter.add(known) == (7, bits_for(5000))  # the shape of the filter they went into
    copy = FilterCopy(await redis.get(keys.code_filter))
    assert copy.generation == 7 and all(copy.may_contain(d, s) for d, s in known)
    positives = sum(copy.may_contain("h1.example:81", f"unknown-{i}") for i in range(10_000))
    assert positives < 300  # 1 % expected


@asynccontextmanager
async def edges(env: dict[str, str]) -> AsyncIterator[list[tuple[EdgeApp, httpx.AsyncClient]]]:
    """Two edge processes' worth (their own caches, followers and filters): one per server kind."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(edge_client(env, kind)) for kind in ("protocol", "asgi")]


@dataclass
class Running:
    """A control plane and two edge processes (one per server kind) believing a filter the cache sync built."""

    api: httpx.AsyncClient
    both: list[tuple[EdgeApp, httpx.AsyncClient]]
    redis: aioredis.Redis
    db: asyncpg.Pool[Any]
    env: dict[str, str]

    @property
    def apps(self) -> list[EdgeApp]:
        return [app for app, _ in self.both]

    @property
    def cache(self) -> EdgeCache:
        """The control plane's write-through, as every write path ends in it."""
        return EdgeCache(self.redis, RedisKeys(self.env["REDIS_NAMESPACE"]))


@asynccontextmanager
async def running_on(env: dict[str, str]) -> AsyncIterator[Running]:
    assert await sync_once(env)
    redis = aioredis.Redis.from_url(env["REDIS_URL"])
    db = await create_pool(env["DATABASE_URL"], min_size=1, max_size=4)
    try:
        async with control_plane(env) as api, edges(env) as both:
            await trusted(*(app for app, _ in both))
            yield Running(api, both, redis, db, env)
    finally:
        await db.close()
        await redis.aclose()


@pytest.fixture
async def running(env: dict[str, str]) -> AsyncIterator[Running]:
    async with running_on(env) as stack:
        yield stack


@pytest.fixture
async def running_private(private_env: dict[str, str]) -> AsyncIterator[Running]:
    """The same on a Redis that the test may flush, stop and restore."""
    async with running_on(private_env) as stack:
        yield stack


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
        running: Running, make_key: KeyFactory, cp_settings: ControlPlaneSettings) -> None:
    key, api, both = await make_key(), running.api, running.both
    worker = await start_worker(JobSettings(control_plane=cp_settings, poll_interval=0.05, lease=60.0), running.db,
                                running.redis)

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


async def filter_work(edge: httpx.AsyncClient) -> tuple[float, float]:
    """(whole loads, deltas applied) of an edge's copy of the filter, as /metrics shows them."""
    text = (await edge.get("/metrics")).text
    return (metric(text, "scanroute_edge_code_filter_loads_total"),
            metric(text, "scanroute_edge_code_filter_deltas_total"))


def contacts(running: Running) -> list[int]:
    """How often each edge (re)made contact with Redis: a new contact makes it load the filter whole, by design."""
    return [app.link.contacts for app in running.apps]


async def test_every_edge_sets_a_creations_bits_in_its_copy_instead_of_loading_the_filter(
        running: Running, make_key: KeyFactory) -> None:
    key, api = await make_key(), running.api
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://example.com/menu"}})).json()

    async def mint(count: int) -> list[str]:
        minted = await api.post(f"/v1/qr-groups/{group['id']}/codes", headers=bearer(key), json={"count": count})
        assert minted.status_code == 201, minted.text
        return [c["slug"] for c in minted.json()["data"]]

    async def created(create: Callable[[], Awaitable[list[str]]]) -> list[tuple[float, float]]:
        """Create, check that every edge answers the new codes 302 at once, and return how each edge got them
        (loads, deltas) — repeated when an edge reconnected meanwhile (a machine that stalls its follower)."""
        for _ in range(5):
            before, reached = [await filter_work(edge) for _, edge in running.both], contacts(running)
            slugs = await create()
            for app, edge in running.both:
                assert app.code_filter.trusted()
                answers = await asyncio.gather(*(edge.get(f"/{slug}", headers=HOST) for slug in slugs))
                assert [a.status_code for a in answers] == [302] * len(slugs)
            if contacts(running) == reached:
                return [(loads - was[0], deltas - was[1]) for (loads, deltas), was in
                        zip([await filter_work(edge) for _, edge in running.both], before, strict=True)]
        raise AssertionError("an edge reconnected in each of 5 rounds")

    async def small() -> list[str]:
        slugs = [(await make_code(api, key, destination={"type": "url", "url": f"https://example.com/{n}"}))["slug"]
                 for n in range(3)]
        return slugs + await mint(20)

    assert await created(small) == [(0, 4)] * 2  # four writes, four deltas, no GET of the filter
    # A write of more codes than one entry names (a big mint or import) makes every edge load it whole.
    assert await created(lambda: mint(DELTA_KEYS + 1)) == [(1, 0)] * 2


async def test_a_new_generation_makes_every_edge_load_the_filter_and_later_deltas_apply_to_it(
        running: Running, make_key: KeyFactory) -> None:
    key, cache = await make_key(), running.cache
    for _ in range(5):  # repeated when an edge reconnected meanwhile, as above
        generations, reached = {generation(app) for app in running.apps}, contacts(running)
        before = [await filter_work(edge) for _, edge in running.both]
        assert await CodeFilterKeeper(running.db, cache.code_filter, cache.invalidate).rebuild("a test")
        for edge, (loads, _) in zip((edge for _, edge in running.both), before, strict=True):
            await loaded(edge, loads + 1)
        await trusted(*running.apps)
        assert not generations & {generation(app) for app in running.apps}
        code = await make_code(running.api, key, destination={"type": "url", "url": "https://example.com/new"})
        for app, edge in running.both:
            assert app.code_filter.trusted()
            assert (await edge.get(f"/{code['slug']}", headers=HOST)).status_code == 302
        if contacts(running) == reached:
            break
    else:
        raise AssertionError("an edge reconnected in each of 5 rounds")
    for (_, edge), (loads, deltas) in zip(running.both, before, strict=True):
        assert await filter_work(edge) == (loads + 1, deltas + 1)


async def test_entries_an_edge_may_have_missed_make_it_load_the_filter_whole(
        running: Running, make_key: KeyFactory) -> None:
    """A code whose announcement was trimmed off the stream before the edges read it (the write-through
    without its entry, then the stream trimmed past the edges' position) is in their copies once they have
    noticed the gap: they load the filter whole instead of waiting for a delta that will not come."""
    key, cache = await make_key(), running.cache
    code = await make_code(running.api, key, destination={"type": "url", "url": "https://example.com/missed"})
    assert (await running.api.post("/v1/domains", headers=bearer(key), json={"hostname": "go.example"})
            ).status_code == 201
    for _, edge in running.both:
        assert (await edge.get(f"/{code['slug']}", headers={"host": "go.example"})).status_code == 404
    before = [await filter_work(edge) for _, edge in running.both]
    await running.db.execute("UPDATE qr_codes SET domain = 'go.example', version = version + 1 WHERE id = $1",
                             code["id"])
    rows = await load_codes(running.db, [code["id"]])
    await cache.rows.store_codes_kept([("go.example", code["slug"], rows[code["id"]])])
    assert await cache.code_filter.add([("go.example", code["slug"])]) is not None
    assert FilterCopy(await running.redis.get(cache.keys.code_filter)).may_contain("go.example", code["slug"])
    async with running.redis.pipeline(transaction=True) as pipe:  # the announcement, lost at once
        pipe.xadd(cache.keys.invalidations, {INVALIDATION_FIELD: NEGATIVE_ENTRIES})
        pipe.xadd(cache.keys.invalidations, {INVALIDATION_FIELD: cache.keys.code("qr.test", code["slug"])})
        pipe.xtrim(cache.keys.invalidations, maxlen=1, approximate=False)
        await pipe.execute()
    for (_, edge), (loads, deltas) in zip(running.both, before, strict=True):
        await loaded(edge, loads + 1)
        assert (await filter_work(edge))[1] == deltas
    await trusted(*running.apps)
    for _, edge in running.both:
        response = await edge.get(f"/{code['slug']}", headers={"host": "go.example"})
        assert response.status_code == 302 and response.headers["location"] == "https://example.com/missed"


def generation(app: EdgeApp) -> int:
    """The generation of an edge's copy, as /readyz shows it."""
    state = app.metrics.code_filter_state()
    assert state is not None
    return int(state["generation"])


async def loaded(edge: httpx.AsyncClient, loads: float) -> None:
    deadline = time.monotonic() + 10
    while (await filter_work(edge))[0] < loads:
        assert time.monotonic() < deadline, "the edge did not load the filter"
        await asyncio.sleep(0.02)


def test_a_delta_is_applied_only_to_the_filter_it_was_set_in() -> None:
    """Bits set in another filter (a rebuild's new generation, or one of another size) would sit at other
    positions: the edge loads the filter instead of setting them."""
    code_filter = CodeFilter("filter", RedisLink(), Fence())
    code_filter.copy = FilterCopy(empty(bits_for(5000), 7))
    code = ("qr.test", secrets.token_urlsafe(6))
    for other in ((8, bits_for(5000)), (7, bits_for(10_000))):
        assert not code_filter.apply(encode_delta(other, [code]))
    assert not code_filter.apply(b"not a delta") and not code_filter.apply(None)
    assert not code_filter.copy.may_contain(*code)
    assert code_filter.apply(encode_delta((7, bits_for(5000)), [code]))
    assert code_filter.copy.may_contain(*code)


@pytest.mark.parametrize("unannounced_bits", [False, True], ids=["first-attempt", "retried"])
async def test_a_code_given_another_domain_is_reachable_there_at_once(
        running: Running, make_key: KeyFactory, unannounced_bits: bool) -> None:
    """Also when Redis's filter already had the code's bits and the edges' copies did not: an earlier attempt of
    the same write-through set them, then failed before its announcement went out, and the write is retried."""
    key = await make_key()
    code = await make_code(running.api, key, destination={"type": "url", "url": "https://example.com/moved"})
    assert (await running.api.post("/v1/domains", headers=bearer(key), json={"hostname": "go.example"})).status_code \
        == 201
    await trusted(*running.apps)
    for _, edge in running.both:  # "unknown" on the new domain, before the move
        assert (await edge.get(f"/{code['slug']}", headers={"host": "go.example"})).status_code == 404
    # No API call moves a code (docs/api.md: its domain never changes once printed); an operator's
    # migration would, and ends in the write-through every write path ends in.
    await running.db.execute("UPDATE qr_codes SET domain = 'go.example', version = version + 1 WHERE id = $1",
                             code["id"])
    if unannounced_bits:
        assert await running.cache.code_filter.add([("go.example", code["slug"])]) is not None
        assert FilterCopy(await running.redis.get(running.cache.keys.code_filter)).may_contain("go.example",
                                                                                              code["slug"])
    await running.cache.publish_codes(running.db, [code["id"]])
    for app, edge in running.both:
        assert app.code_filter.trusted()
        response = await edge.get(f"/{code['slug']}", headers={"host": "go.example"})
        assert response.status_code == 302 and response.headers["location"] == "https://example.com/moved"


async def test_a_redis_that_lost_the_filter_causes_no_false_404_until_it_is_rebuilt(
        running_private: Running, private_redis: PrivateRedis, make_key: KeyFactory) -> None:
    key, api, both, apps, env = await make_key(), running_private.api, running_private.both, running_private.apps, \
        running_private.env
    # The control plane's write-through has seen the filter (its cache sync's loop would have, too).
    before = await make_code(api, key, destination={"type": "url", "url": "https://example.com/before"})
    # Flushed: rows, stream, cursor, edge registry and filter gone at once. The next write cannot wait for
    # the edges' confirmations (their registry is gone): it waits until their fences have closed.
    await running_private.redis.flushall()
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
        running_private: Running, private_redis: PrivateRedis, make_key: KeyFactory, tmp_path: Path) -> None:
    """Its filter lacks the codes created since the file was written, though no write ever failed: the cache
    sync's cursor (as old as the file) says so, and the filter counts again once the outbox is re-applied."""
    key, api, both, apps = await make_key(), running_private.api, running_private.both, running_private.apps
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
    assert not await sync_once(running_private.env)  # re-applies the outbox (`since` back in the filter); no rebuild
    await trusted(*apps)
    await check_filter(both, [since])


async def wait_up(apps: list[EdgeApp]) -> None:
    deadline = time.monotonic() + 15
    while not all(app.link.up for app in apps):
        assert time.monotonic() < deadline, "the edges did not reconnect"
        await asyncio.sleep(0.05)

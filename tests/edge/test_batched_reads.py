"""docs/edge.md, "Misses": the first scans of many codes at once share batched reads, and each still gets
its own code's answer."""

from __future__ import annotations

import asyncio

import msgspec.structs
import pytest
import redis.asyncio as aioredis

from shared.keys import RedisKeys
from shared.rows import CodeRow, Destination
from tests.conftest import KeyFactory
from tests.edge.conftest import control_plane, edge_client
from tests.edge.test_code_filter import redis_reads
from tests.edge.test_scan import make_code


@pytest.mark.parametrize("kind", ["protocol", "asgi"])
async def test_a_burst_of_first_scans_costs_a_few_reads_not_one_per_scan(
        private_env: dict[str, str], make_key: KeyFactory, kind: str) -> None:
    """A poster run's launch: 40 codes scanned at once on an edge that has cached none of them, one of them
    by 20 phones. Every scan gets its own code's destination; the edge reads the rows in a few MGETs."""
    key = await make_key()
    async with control_plane(private_env) as api:
        codes = [await make_code(api, key, destination={"type": "url", "url": f"https://example.com/{i}"})
                 for i in range(40)]
    wanted = [(c["slug"], f"https://example.com/{i}") for i, c in enumerate(codes)] + [
        (codes[7]["slug"], "https://example.com/7")] * 20
    redis = aioredis.Redis.from_url(private_env["REDIS_URL"])  # the test's own server: nobody else reads
    try:
        async with edge_client(private_env, kind) as (app, edge):
            before = await redis_reads(redis)
            answers = await asyncio.gather(*(edge.get(f"/{slug}", headers={"host": "qr.test"})
                                             for slug, _ in wanted))
            after = await redis_reads(redis)
    finally:
        await redis.aclose()
    assert [(a.status_code, a.headers["location"].partition("?")[0]) for a in answers] == [
        (302, url) for _, url in wanted]
    # Never a code's GET (that would be 60): at most the edge's start-up check of the code filter's cursor,
    # which a loaded machine may run after the edge answers (edge/redis_repair.py), and a group row (none here).
    assert after["get"] - before["get"] <= 2, after["get"] - before["get"]
    assert 1 <= after["mget"] - before["mget"] <= 10, after["mget"] - before["mget"]
    assert len(app.codes) >= 40


@pytest.mark.parametrize("kind", ["protocol", "asgi"])
async def test_past_its_ttl_a_row_is_read_again_a_changed_one_answers_an_unchanged_one_is_kept(
        env: dict[str, str], make_key: KeyFactory, redis: aioredis.Redis, kind: str) -> None:
    """The TTL is the last backstop behind invalidations (docs/freshness.md): a row changed in Redis without
    any invalidation (as a lost one would leave it) answers once the entry is past its TTL. A row read again
    unchanged keeps its cached entry, prepared scan included (docs/edge.md, "Misses")."""
    key = await make_key()
    async with control_plane(env) as api:
        changed, same = [await make_code(api, key, destination={"type": "url", "url": f"https://example.com/{n}"})
                         for n in ("changed", "same")]
    keys = RedisKeys(env["REDIS_NAMESPACE"])
    async with edge_client({**env, "EDGE_CACHE_TTL": "0.3"}, kind) as (app, edge):
        async with asyncio.timeout(10):  # Redis's rows count once the edge has seen the cache sync's cursor
            while not app.link.rows_current:
                await asyncio.sleep(0.05)
        for code in (changed, same):
            assert (await edge.get(f"/{code['slug']}", headers={"host": "qr.test"})).status_code == 302
        kept = app.codes.last(keys.code("qr.test", same["slug"]))
        raw = await redis.get(keys.code("qr.test", changed["slug"]))
        assert raw is not None
        row = CodeRow.decode(raw)
        await redis.set(keys.code("qr.test", changed["slug"]), msgspec.structs.replace(
            row, version=row.version + 1, destination=Destination("url", "https://example.com/moved")).encode())
        await asyncio.sleep(0.4)
        answers = [await edge.get(f"/{code['slug']}", headers={"host": "qr.test"}) for code in (changed, same)]
        assert [a.headers["location"] for a in answers] == ["https://example.com/moved", "https://example.com/same"]
        assert kept is not None and app.codes.last(keys.code("qr.test", same["slug"])) is kept

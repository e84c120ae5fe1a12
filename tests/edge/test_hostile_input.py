"""docs/api.md §3.4: hostile input never reaches a lookup, never grows a cache, never breaks other scans."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

import edge.scan_target as scan_target
from edge.app import EdgeApp
from edge.code_reads import CodeReads
from edge.local_cache import LocalCache
from edge.redis_link import RedisLink
from edge.scan_target import Domains, slug_of
from shared.keys import RedisKeys
from tests.conftest import KeyFactory
from tests.edge.conftest import control_plane, edge_client
from tests.edge.test_scan import make_code, stream_events

BAD_PATHS = ["/%00x", "/a%2Fb", "/" + "a" * 65, "/a:b", "/a.b", "/%C3%A9t%C3%A9", "/28080:abc", "/a b"]
BAD_HOSTS = ["h" * 200 + ".", "qr.test:99999", "qr_test", "-qr.test", "qr..test", "[::1", "[zz::1]:80",
             "qr.test:80:80", "a" * 64 + ".test"]


@pytest.mark.parametrize("path", BAD_PATHS)
async def test_impossible_slugs_get_the_404_page_without_a_lookup(
        edge: httpx.AsyncClient, edge_app: EdgeApp, path: str) -> None:
    response = await edge.get(path)
    assert response.status_code == 404 and b"does not exist" in response.content
    assert (edge_app.codes.hits, edge_app.codes.misses, len(edge_app.codes)) == (0, 0, 0)


@pytest.mark.parametrize("host", BAD_HOSTS)
async def test_impossible_hosts_get_the_404_page_without_a_lookup(
        edge: httpx.AsyncClient, edge_app: EdgeApp, host: str) -> None:
    response = await edge.get("/abc", headers={"host": host})
    assert response.status_code == 404
    assert (edge_app.codes.hits, edge_app.codes.misses, len(edge_app.codes)) == (0, 0, 0)


def test_hosts_and_slugs_that_can_name_a_code() -> None:
    domains = Domains()
    assert domains.of(b"QR.Test.") == "qr.test"
    assert domains.of(b"qr.test:8080") == "qr.test:8080"
    assert domains.of(b"127.0.0.1:28080") == "127.0.0.1:28080"
    assert domains.of(b"[::1]:8080") == "[::1]:8080"
    assert [domains.of(h.encode()) for h in BAD_HOSTS] == [None] * len(BAD_HOSTS)
    assert slug_of("/abc-DEF_9/") == "abc-DEF_9" and slug_of("/" + "a" * 64) == "a" * 64
    assert slug_of("/") is None and slug_of("//") is None
    # Any `xn--` label the pattern takes may be a domain registered before IDNA 2008 was checked (docs/edge.md).
    assert domains.of(b"XN--I-7IQ.ws") == "xn--i-7iq.ws" and domains.of(b"xn--zz.qr.test:8080") == "xn--zz.qr.test:8080"


def test_a_host_is_judged_once_whether_refused_or_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    judged: list[bytes] = []
    judge = scan_target._domain

    def counting(host: bytes) -> str | None:
        judged.append(host)
        return judge(host)

    monkeypatch.setattr(scan_target, "_domain", counting)
    domains = Domains()
    for _ in range(1000):
        assert domains.of(b"qr..test") is None and domains.of(b"qr.test") == "qr.test"
    assert judged == [b"qr..test", b"qr.test"], f"{len(judged)} verdicts for two hosts"
    for n in range(5000):  # hostile hosts, refused, push no valid one out of its memo
        assert domains.of(b"-%d.test" % n) is None
    assert domains.of(b"qr.test") == "qr.test" and judged.count(b"qr.test") == 1


async def test_a_slug_with_a_colon_never_reaches_another_hosts_code(
        env: dict[str, str], make_key: KeyFactory, server_kind: str) -> None:
    """`Host: 127.0.0.1` + `/28080:abc` used to reach the code `abc` of `127.0.0.1:28080`, and to cache a
    false "not found" under its key."""
    key = await make_key()
    env = {**env, "DEFAULT_DOMAIN": "127.0.0.1:28080"}
    async with control_plane(env) as api:
        code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/real"})
    async with edge_client(env, server_kind) as (app, edge):
        assert (await edge.get(f"/28080:{code['slug']}", headers={"host": "127.0.0.1"})).status_code == 404
        assert len(app.codes) == 0
        response = await edge.get(f"/{code['slug']}", headers={"host": "127.0.0.1:28080"})
        assert response.status_code == 302 and response.headers["location"] == "https://example.com/real"
    keys = RedisKeys("ns")
    assert keys.code("127.0.0.1", "28080:abc") != keys.code("127.0.0.1:28080", "abc")


async def test_a_bad_key_in_a_batched_read_fails_alone(
        api: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis, redis_namespace: str,
        database_url: str) -> None:
    """A NUL in a slug made PostgreSQL reject the whole batch read: every real scan in it answered 503."""
    key = await make_key()
    codes = [await make_code(api, key, destination={"type": "url", "url": f"https://example.com/{i}"})
             for i in range(3)]
    keys = RedisKeys(redis_namespace)
    await redis.delete(*(keys.code("qr.test", c["slug"]) for c in codes))  # so that PostgreSQL is read
    link = RedisLink()
    link.mark_up()
    pool: asyncpg.Pool[Any] = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        reads = CodeReads(redis, pool, keys, link)
        wanted = [("qr.test", codes[0]["slug"]), ("qr.test", "bad\x00slug"), ("qr.test", codes[1]["slug"]),
                  ("qr.test", codes[2]["slug"])]
        results = await reads.read_many({w: keys.code(*w) for w in wanted})
    finally:
        await pool.close()
    assert isinstance(results[wanted[1]], asyncpg.PostgresError)
    assert [getattr(results[w], "id", None) for w in wanted if w != wanted[1]] == [c["id"] for c in codes]


async def test_every_cache_is_bounded_in_bytes_negative_entries_included() -> None:
    cache: LocalCache[str] = LocalCache(10**9, 60.0, 60.0, max_bytes=100_000, weigh=len)

    async def unknown() -> str | None:
        return None

    async def known() -> str | None:
        return "row" * 100

    for i in range(5000):
        await cache.get(f"ns:code:{'h' * 200}.test:slug{i}", unknown if i % 2 else known)
    assert cache.bytes + cache.negative_bytes <= 100_000 and 50 < len(cache) < 1000
    assert await cache.get(f"ns:code:{'h' * 200}.test:slug4999", unknown) is None
    assert cache.hits == 1  # the most recent entries are the ones kept


async def test_hostile_scans_among_real_ones_change_no_answer(
        env: dict[str, str], api: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str, server_kind: str) -> None:
    key = await make_key()
    codes = [await make_code(api, key, destination={"type": "url", "url": f"https://example.com/{i}"})
             for i in range(5)]
    async with edge_client(env, server_kind) as (app, edge):
        hostile = [edge.get(path, headers={"host": host}) for path in BAD_PATHS for host in ("qr.test", "h" * 250)]
        real = [edge.get(f"/{c['slug']}") for c in codes]
        answers = await asyncio.gather(*real, *hostile)
        assert [a.status_code for a in answers[:5]] == [302] * 5
        assert {a.status_code for a in answers[5:]} == {404}
        assert len(app.codes) == 5  # no entry for any hostile request
    assert len(await stream_events(redis, redis_namespace)) == 5

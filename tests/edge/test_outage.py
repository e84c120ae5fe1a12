"""docs/api.md §3.3: a Redis outage under load loses no scan, and never turns into a wrong answer."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import redis.asyncio as aioredis

from shared.keys import RedisKeys
from tests.conftest import KeyFactory
from tests.edge.conftest import control_plane, edge_client
from tests.edge.private_redis import PrivateRedis
from tests.edge.test_scan import make_code, stream_events
from tests.ports import free_port


class Load:
    """Scans the codes in a loop, each with its own user agent, remembering every answer."""

    def __init__(self, edge: httpx.AsyncClient, slugs: list[str]) -> None:
        self.edge = edge
        self.slugs = slugs
        self.answers: dict[str, int] = {}
        self.running = True

    async def run(self, worker: int) -> None:
        n = 0
        while self.running:
            agent = f"probe-{worker}-{n}"
            response = await self.edge.get(f"/{self.slugs[n % len(self.slugs)]}", headers={"user-agent": agent})
            self.answers[agent] = response.status_code
            n += 1
            await asyncio.sleep(0.002)


async def wait_until(condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_redis_outage_under_load_loses_no_scan(private_env: dict[str, str], private_redis: PrivateRedis,
                                                     make_key: KeyFactory) -> None:
    key = await make_key()
    async with control_plane(private_env) as api, edge_client(private_env) as (app, edge):
        codes = [await make_code(api, key, destination={"type": "url", "url": f"https://example.com/{i}"})
                 for i in range(4)]
        load = Load(edge, [c["slug"] for c in codes])
        workers = [asyncio.create_task(load.run(w)) for w in range(8)]
        await asyncio.sleep(0.3)
        await asyncio.to_thread(private_redis.stop)
        await wait_until(lambda: app.journal.depth >= 100)  # a hundred scans answered during the outage
        await asyncio.to_thread(private_redis.start)
        await wait_until(lambda: app.link.up and app.journal.depth == 0)
        await asyncio.sleep(0.3)
        load.running = False
        await asyncio.gather(*workers)

    assert set(load.answers.values()) == {302}  # every cached code kept redirecting
    redis = aioredis.Redis.from_url(private_redis.url)
    try:
        recorded = Counter(e.user_agent for e in await stream_events(redis, private_env["REDIS_NAMESPACE"]))
    finally:
        await redis.aclose()
    wrong = {agent: recorded[agent] for agent in load.answers if recorded[agent] != 1}
    assert not wrong, f"answered scans missing or doubled: {wrong}"


async def test_without_any_store_only_cached_codes_redirect(private_env: dict[str, str],
                                                            private_redis: PrivateRedis,
                                                            make_key: KeyFactory) -> None:
    key = await make_key()
    dead_database = f"postgresql://postgres@127.0.0.1:{free_port()}/gone"
    async with control_plane(private_env) as api:
        cached = await make_code(api, key, destination={"type": "url", "url": "https://example.com/cached"})
        uncached = await make_code(api, key, destination={"type": "url", "url": "https://example.com/other"})
    async with edge_client({**private_env, "DATABASE_URL": dead_database}) as (app, edge):
        assert (await edge.get(f"/{cached['slug']}")).status_code == 302  # from Redis, now cached locally
        private_redis.stop()
        await wait_until(lambda: not app.fence.open())  # no confirmation for half a lease: fenced
        still = await edge.get(f"/{cached['slug']}")
        assert still.status_code == 302 and still.headers["location"] == "https://example.com/cached"
        for slug in (uncached["slug"], "never-made"):
            response = await edge.get(f"/{slug}")
            assert response.status_code == 503 and response.headers["retry-after"] == "2"  # never a false 404
        assert app.journal.depth == 1
        assert 'scanroute_edge_stale_answers_total{kind="code"} 1.0' in (await edge.get("/metrics")).text
        ready = await edge.get("/readyz")
        assert ready.status_code == 503 and ready.json()["journal_depth"] == 1


async def test_scans_of_uncached_codes_read_postgres_while_redis_is_down(
        private_env: dict[str, str], private_redis: PrivateRedis, make_key: KeyFactory) -> None:
    key = await make_key()
    async with control_plane(private_env) as api, edge_client(private_env) as (app, edge):
        code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/pg"})
        private_redis.stop()
        response = await edge.get(f"/{code['slug']}?x=1")
        assert response.status_code == 302 and response.headers["location"] == "https://example.com/pg?x=1"
        assert (await edge.get("/never-made")).status_code == 404  # PostgreSQL answered: truly unknown
        private_redis.start()
        await wait_until(lambda: app.link.up and app.journal.depth == 0)
    redis = aioredis.Redis.from_url(private_redis.url)
    try:
        events = await stream_events(redis, private_env["REDIS_NAMESPACE"])
        assert [e.code_id for e in events] == [code["id"]]
        assert await redis.xlen(RedisKeys(private_env["REDIS_NAMESPACE"]).scans) == 1
    finally:
        await redis.aclose()



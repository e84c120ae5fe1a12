"""docs/edge.md "Scan journal and stream caps": during an outage neither the journal nor the scan stream
grows past its limit; past it the edge answers 503 and says why in /metrics, and loses no scan it answered."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import redis.asyncio as aioredis

from edge.app import EdgeApp
from shared.keys import RedisKeys
from tests.conftest import KeyFactory
from tests.edge.conftest import control_plane, edge_client
from tests.edge.private_redis import PrivateRedis
from tests.edge.test_outage import wait_until
from tests.edge.test_scan import make_code, stream_events


async def recorded_agents(redis_url: str, namespace: str) -> Counter[str | None]:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        return Counter(e.user_agent for e in await stream_events(redis, namespace))
    finally:
        await redis.aclose()


def metric(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.rpartition(" ")[2])


async def scan(edge: httpx.AsyncClient, slug: str, agent: str, answers: dict[str, int]) -> int:
    response = await edge.get(f"/{slug}", headers={"user-agent": agent})
    answers[agent] = response.status_code
    if response.status_code == 503:
        assert response.headers["retry-after"] == "2"
    return response.status_code


async def test_a_full_journal_sheds_scans_and_loses_none_it_answered(
        private_env: dict[str, str], private_redis: PrivateRedis, make_key: KeyFactory) -> None:
    key = await make_key()
    env = {**private_env, "EDGE_JOURNAL_MB": "0.004"}  # about 4 KB: a dozen scans
    answers: dict[str, int] = {}
    async with control_plane(env) as api, edge_client(env) as (app, edge):
        code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/a"})
        assert await scan(edge, code["slug"], "before", answers) == 302
        await asyncio.to_thread(private_redis.stop)
        for n in range(200):
            if await scan(edge, code["slug"], f"outage-{n}", answers) == 503:
                break
        journaled = [agent for agent, status in answers.items() if agent.startswith("outage") and status == 302]
        assert journaled and answers[f"outage-{n}"] == 503
        assert await scan(edge, code["slug"], "still-full", answers) == 503
        metrics = (await edge.get("/metrics")).text
        assert metric(metrics, 'scanroute_edge_shed_total{reason="journal_full"}') == 2
        assert 0 < metric(metrics, "scanroute_edge_journal_bytes") <= 0.004 * (1 << 20)
        ready = await edge.get("/readyz")
        assert ready.status_code == 503 and ready.json()["shedding"] is True

        await asyncio.to_thread(private_redis.start)
        await wait_until(lambda: app.link.up and app.journal.depth == 0)
        assert await scan(edge, code["slug"], "after", answers) == 302
        assert (await edge.get("/readyz")).json()["shedding"] is False

    recorded = await recorded_agents(private_redis.url, env["REDIS_NAMESPACE"])
    assert {agent: recorded[agent] for agent, status in answers.items() if status == 302} \
        == dict.fromkeys(["before", *journaled, "after"], 1)
    assert not any(recorded[agent] for agent, status in answers.items() if status == 503)


async def stream_length(app: EdgeApp) -> int:
    return int(await app.redis.xlen(app.keys.scans))


async def test_a_full_scan_stream_sheds_scans_without_trimming_any(
        env: dict[str, str], make_key: KeyFactory, redis: aioredis.Redis) -> None:
    """No ingest worker runs here: the stream only grows, as while PostgreSQL is down."""
    key = await make_key()
    env = {**env, "SCAN_STREAM_MAX_ENTRIES": "5"}
    answers: dict[str, int] = {}
    async with control_plane(env) as api, edge_client(env) as (app, edge):
        code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/a"})
        statuses = [await scan(edge, code["slug"], f"scan-{n}", answers) for n in range(7)]
        assert statuses == [302] * 5 + [503] * 2
        assert await stream_length(app) == 5
        metrics = (await edge.get("/metrics")).text
        assert metric(metrics, 'scanroute_edge_shed_total{reason="stream_full"}') == 2
        # the ingest workers store and trim two entries: room for two scans
        oldest = await redis.xrange(RedisKeys(env["REDIS_NAMESPACE"]).scans, count=2)
        await redis.xdel(RedisKeys(env["REDIS_NAMESPACE"]).scans, *[entry_id for entry_id, _ in oldest])
        assert [await scan(edge, code["slug"], f"room-{n}", answers) for n in range(3)] == [302, 302, 503]

    recorded = await recorded_agents(env["REDIS_URL"], env["REDIS_NAMESPACE"])
    assert recorded == Counter(["scan-2", "scan-3", "scan-4", "room-0", "room-1"])


async def test_a_replay_waits_for_room_in_the_stream(private_env: dict[str, str], private_redis: PrivateRedis,
                                                     make_key: KeyFactory) -> None:
    key = await make_key()
    env = {**private_env, "SCAN_STREAM_MAX_ENTRIES": "4"}
    answers: dict[str, int] = {}
    async with control_plane(env) as api, edge_client(env) as (app, edge):
        code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/a"})
        await asyncio.to_thread(private_redis.stop)
        assert [await scan(edge, code["slug"], f"outage-{n}", answers) for n in range(6)] == [302] * 6
        await asyncio.to_thread(private_redis.start)
        await wait_until(lambda: app.link.up)
        for _ in range(100):
            if await stream_length(app) == 4:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert await stream_length(app) == 4 and app.journal.depth == 6  # the rest waits in the journal
        assert await scan(edge, code["slug"], "meanwhile", answers) == 302  # journaled behind them
        stored = await recorded_agents(private_redis.url, env["REDIS_NAMESPACE"])
        await app.redis.xtrim(app.keys.scans, maxlen=0)  # the ingest workers stored and trimmed them
        await wait_until(lambda: app.journal.depth == 0)
        assert await stream_length(app) == 3

    stored += await recorded_agents(private_redis.url, env["REDIS_NAMESPACE"])
    assert stored == Counter(list(answers))  # each answered scan exactly once


async def test_scans_are_shed_before_redis_reaches_its_maxmemory(
        private_env: dict[str, str], private_redis: PrivateRedis, make_key: KeyFactory) -> None:
    key = await make_key()
    answers: dict[str, int] = {}
    async with control_plane(private_env) as api, edge_client(private_env) as (app, edge):
        code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/a"})
        assert await scan(edge, code["slug"], "before", answers) == 302
        used = int((await app.redis.info("memory"))["used_memory"])
        await app.redis.config_set("maxmemory", used * 100 // 95)  # 95 % used: past the default 90 %
        await wait_until(lambda: app.recorder.memory_full)
        assert await scan(edge, code["slug"], "near-maxmemory", answers) == 503
        metrics = (await edge.get("/metrics")).text
        assert metric(metrics, 'scanroute_edge_shed_total{reason="redis_memory"}') == 1
        await app.redis.config_set("maxmemory", 0)
        await wait_until(lambda: not app.recorder.memory_full)
        assert await scan(edge, code["slug"], "after", answers) == 302

    assert await recorded_agents(private_redis.url, private_env["REDIS_NAMESPACE"]) == Counter(["before", "after"])

"""`make bench-ingest`: ingest throughput of one worker, and analytics latency on a code with 1M scans.

Uses DATABASE_URL/REDIS_URL when both are set (a scratch database and Redis namespace are made and removed),
else private servers started for the run, as the tests do.

    python -m loadtests.bench_ingest [--events 200000] [--analytics-scans 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import secrets
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import redis.asyncio as aioredis

from control_plane.api.app import create_app
from control_plane.cli.migrate import migrate
from control_plane.ingest.worker import IngestWorker
from control_plane.services.keys import create_key, ensure_org
from shared.database import create_pool
from shared.embedded import EmbeddedServices, temporary_root
from shared.ids import new_id
from shared.keys import INGEST_GROUP, SCAN_FIELD, RedisKeys
from shared.scan_event import ScanEvent
from shared.settings import ControlPlaneSettings, IngestSettings

# A realistic mix: a few phone models dominate, in-app scanners and bots are a minority.
USER_AGENTS = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/16.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0"
    " Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0"
    " Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko)"
    " SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
    " MicroMessenger/8.0.47(0x18002f2f) NetType/WIFI Language/zh_CN",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
    " Instagram 320.0.2.28.108 (iPhone15,2; iOS 17_3; en_US; en; scale=3.00; 1179x2556; 567040018)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0"
    " Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
]
WEIGHTS = [30, 15, 20, 10, 8, 5, 4, 5, 2, 1]
COUNTRIES = ["US", "DE", "FR", "GB", "JP", "AU", None]


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@contextmanager
def stores() -> Iterator[tuple[str, str]]:
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        yield os.environ["DATABASE_URL"], os.environ["REDIS_URL"]
        return
    services = EmbeddedServices(temporary_root("scanroute-bench-"), persistent=False)
    services.start()
    try:
        yield services.database_url, services.redis_url
    finally:
        services.stop()
        shutil.rmtree(services.root, ignore_errors=True)


async def admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def make_code(conn: asyncpg.Connection[Any], livemode: bool = True) -> tuple[str, str, str]:
    org_id = await ensure_org(conn, f"bench-{secrets.token_hex(4)}")
    key = await create_key(conn, org_id, livemode=livemode, scopes=["qr:read"])
    code_id = new_id("qr")
    await conn.execute("INSERT INTO qr_codes (id, org_id, livemode, kind, type, slug, domain)"
                       " VALUES ($1, $2, $3, 'dynamic', 'url', $4, 'bench.test')",
                       code_id, org_id, livemode, secrets.token_hex(5))
    return org_id, code_id, key.secret


def edge_hash(value: str) -> str:
    """Stands in for the edge's keyed hash: 32 hex digits."""
    return hashlib.md5(value.encode()).hexdigest()


def events(code_id: str, org_id: str, count: int, *, spread_ms: int = 3_600_000, seed: int = 7,
           visitors: int = 80_000) -> list[bytes]:
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    agents = rng.choices(USER_AGENTS, WEIGHTS, k=count)
    return [ScanEvent(str(uuid.uuid4()), now_ms - rng.randrange(spread_ms), code_id, None, org_id, True,
                      "redirected", "GET", rng.random() < 0.9, edge_hash(f"ip{rng.randrange(visitors // 2)}"),
                      edge_hash(f"v{rng.randrange(visitors)}"), agents[i], "", "en-US,en;q=0.9", rng.choice(COUNTRIES),
                      {"table": str(i % 40)}).encode()
            for i in range(count)]


async def bench_ingest(database_url: str, redis_url: str, count: int, batch_size: int) -> float:
    namespace = f"bench{secrets.token_hex(4)}"
    redis = aioredis.Redis.from_url(redis_url)
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            org_id, code_id, _ = await make_code(conn)
        stream = RedisKeys(namespace).scans
        payloads = events(code_id, org_id, count)
        for start in range(0, count, 10_000):
            async with redis.pipeline(transaction=False) as pipe:
                for payload in payloads[start:start + 10_000]:
                    pipe.xadd(stream, {SCAN_FIELD: payload})
                await pipe.execute()
        settings = IngestSettings.from_env({"DATABASE_URL": database_url, "REDIS_URL": redis_url,
                                            "REDIS_NAMESPACE": namespace, "INGEST_CONSUMER": "bench",
                                            "INGEST_BATCH_SIZE": str(batch_size), "INGEST_BLOCK_MS": "20"})
        worker = IngestWorker(settings, pool, redis)
        await worker.ensure_group()
        await worker.partitions.ensure_ahead()
        stop = asyncio.Event()
        started = time.perf_counter()
        task = asyncio.create_task(worker.run(stop))
        deadline = started + 600
        while worker.ingested < count and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        stop.set()
        await asyncio.wait_for(task, 30)
        stored = await pool.fetchval("SELECT count(*) FROM scans WHERE code_id = $1", code_id)
        assert stored == count, f"{stored} of {count} scans stored"
        assert (await redis.xpending(stream, INGEST_GROUP))["pending"] == 0
        return count / elapsed
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{namespace}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
        await pool.close()


async def bench_lag(database_url: str, redis_url: str, rate: int, seconds: float) -> list[float]:
    """End-to-end lag at a steady `rate`: XADD time of each scan → its count visible in PostgreSQL.

    A real `scanroute ingest` process (default settings) consumes the stream; this process produces in 10 ms
    ticks and polls the code's `scan_count` every 20 ms (so lags are accurate to about 20 ms). Scans are
    stored in stream order, so scan i is visible once the count reaches i + 1.
    """
    namespace = f"benchlag{secrets.token_hex(4)}"
    redis = aioredis.Redis.from_url(redis_url)
    pool = await create_pool(database_url, min_size=1, max_size=2)
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "REDIS_NAMESPACE": namespace}
    worker = await asyncio.create_subprocess_exec(sys.executable, "-m", "control_plane.cli", "ingest", env=env,
                                                  stderr=asyncio.subprocess.DEVNULL)
    try:
        async with pool.acquire() as conn:
            org_id, code_id, _ = await make_code(conn)
        stream = RedisKeys(namespace).scans
        agent = USER_AGENTS[0]
        produced: list[float] = []
        lags: list[float] = []
        total = int(rate * seconds)

        async def produce() -> None:
            started = time.monotonic()
            while len(produced) < total:
                due = min(total, int((time.monotonic() - started) * rate) + rate // 100)
                batch = due - len(produced)
                if batch > 0:
                    now_ms = int(time.time() * 1000)
                    async with redis.pipeline(transaction=False) as pipe:
                        for _ in range(batch):
                            pipe.xadd(stream, {SCAN_FIELD: ScanEvent(
                                str(uuid.uuid4()), now_ms, code_id, None, org_id, True, "redirected", "GET", True,
                                "ip", "visitor", agent).encode()})
                        await pipe.execute()
                    produced.extend([time.monotonic()] * batch)
                await asyncio.sleep(0.01)

        async def observe() -> None:
            deadline = time.monotonic() + seconds + 60
            while len(lags) < total and time.monotonic() < deadline:
                visible = await pool.fetchval("SELECT scan_count FROM qr_codes WHERE id = $1", code_id)
                now = time.monotonic()
                lags.extend(now - produced[i] for i in range(len(lags), min(visible, len(produced))))
                await asyncio.sleep(0.02)

        await asyncio.gather(produce(), observe())
        assert len(lags) == total, f"{len(lags)} of {total} scans became visible"
        return lags
    finally:
        worker.terminate()
        await worker.wait()
        keys = [k async for k in redis.scan_iter(match=f"{namespace}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
        await pool.close()


async def bench_analytics(database_url: str, redis_url: str, scans: int, runs: int) -> dict[str, float]:
    """One code with `scans` scans over 30 days, stored by the real ingest path (rollups and sketches too)."""
    pool = await create_pool(database_url, min_size=1, max_size=2)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async with pool.acquire() as conn:
            org_id, code_id, key = await make_code(conn)
        settings = IngestSettings.from_env({"DATABASE_URL": database_url, "REDIS_URL": redis_url,
                                            "REDIS_NAMESPACE": f"bench{secrets.token_hex(4)}"})
        worker = IngestWorker(settings, pool, redis)
        chunk = 50_000
        for start in range(0, scans, chunk):
            payloads = events(code_id, org_id, min(chunk, scans - start), spread_ms=30 * 86_400_000, seed=start,
                              visitors=scans // 2)
            for at in range(0, len(payloads), 5000):
                await worker.ingest([(b"0-1", {SCAN_FIELD: p}) for p in payloads[at:at + 5000]])
        await pool.execute("VACUUM ANALYZE scans")
        exact = await pool.fetchrow(
            "SELECT count(DISTINCT visitor_hash) AS visitors, count(DISTINCT ip_hash) AS ips FROM scans"
            " WHERE code_id = $1 AND NOT is_bot AND scanned_at >= now() - interval '30 days'", code_id, timeout=300)
        print(f"exact uniques over 30 days (for the estimates below): {exact['visitors']} visitors, {exact['ips']} IPs")
    finally:
        await redis.aclose()
        await pool.close()
    settings = ControlPlaneSettings.from_env({"DATABASE_URL": database_url, "REDIS_URL": redis_url,
                                              "REDIS_NAMESPACE": f"bench{secrets.token_hex(4)}"})
    app = create_app(settings)
    results: dict[str, float] = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cp.bench", timeout=60,
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            for label, params in (("30 days by day", {}), ("7 days by hour", {"group_by": "hour", "since": (
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 7 * 86400)))})):
                timings = []
                for _ in range(runs + 1):
                    started = time.perf_counter()
                    response = await client.get(f"/v1/qr-codes/{code_id}/scans", params=params)
                    timings.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, response.text
                timings = timings[1:]  # the first run warms caches
                results[f"{label} p50 ms"] = statistics.median(timings)
                results[f"{label} max ms"] = max(timings)
                print(f"analytics {label}: totals {response.json()['totals']}")
    return results


async def main(args: argparse.Namespace) -> None:
    with stores() as (server_url, redis_url):
        name = f"scanroute_bench_{secrets.token_hex(4)}"
        await admin(server_url, f'CREATE DATABASE "{name}"')
        database_url = with_database(server_url, name)
        try:
            conn = await asyncpg.connect(database_url, timeout=10)
            try:
                await migrate(conn)
            finally:
                await conn.close()
            rate = await bench_ingest(database_url, redis_url, args.events, args.batch_size)
            print(f"ingest: {args.events} events, batch {args.batch_size}, one worker: {rate:,.0f} scans/s")
            lags = sorted(await bench_lag(database_url, redis_url, args.lag_rate, args.lag_seconds))
            print(f"end-to-end lag at {args.lag_rate:,} scans/s for {args.lag_seconds:.0f} s (one worker process):"
                  f" p50 {lags[len(lags) // 2] * 1000:.0f} ms, p99 {lags[int(len(lags) * 0.99)] * 1000:.0f} ms,"
                  f" max {lags[-1] * 1000:.0f} ms (target p99 < 2000 ms)")
            results = await bench_analytics(database_url, redis_url, args.analytics_scans, args.runs)
            for label, value in results.items():
                print(f"analytics, one code with {args.analytics_scans:,} scans over 30 days, {label}: {value:.0f}")
        finally:
            await admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--analytics-scans", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--lag-rate", type=int, default=10_000)
    parser.add_argument("--lag-seconds", type=float, default=20.0)
    asyncio.run(main(parser.parse_args()))

"""docs/rules.md through the edge and the ingest worker: `max_scans` counts human scans only, `qr.expired`
fires once, and analytics break scans down by rule and variant."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis.asyncio as aioredis

from control_plane.ingest.worker import IngestWorker
from edge.app import EdgeApp
from shared.database import create_pool
from shared.keys import RedisKeys
from shared.settings import IngestSettings
from shared.times import timestamp
from tests.conftest import KeyFactory, bearer
from tests.edge.test_rules import (
    IPHONE,
    WINDOWS,
    answer,
    create,
    patch,
    scan,
    served,  # noqa: F401  (autouse: these tests run on both servers too)
    url,
)

PREVIEWER = "WhatsApp/2.23.20.0"


@pytest.fixture
async def worker(ingest_settings: IngestSettings, database_url: str, redis: aioredis.Redis
                 ) -> AsyncIterator[IngestWorker]:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    worker = IngestWorker(ingest_settings, pool, redis)
    await worker.ensure_group()
    yield worker
    await pool.close()


async def ingest(worker: IngestWorker, redis: aioredis.Redis, namespace: str) -> None:
    """Everything the edge recorded so far, as the worker's loop would store it, then the expiry sweep."""
    entries = await redis.xrange(RedisKeys(namespace).scans)
    await worker.ingest(entries)  # stored once: scans seen before are skipped by scan_id
    await worker.expiry.run_once()


async def settled(app: EdgeApp, slug: str, expected: str | int) -> None:
    """The sweep's rows reach the edge through the invalidation stream, within the ingest delay: wait for
    that (HEAD requests are bots, so they use up nothing)."""
    for _ in range(200):
        if answer(await scan(app, slug, method="HEAD")) == expected:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the edge never answered {expected}")


async def test_max_scans_counts_human_scans_only_and_expires_once(
        api: httpx.AsyncClient, edge_app: EdgeApp, make_key: KeyFactory, worker: IngestWorker,
        redis: aioredis.Redis, redis_namespace: str) -> None:
    key = await make_key(scopes=("qr:read", "qr:write", "webhooks:read"))
    code = await create(api, key, destination=url("https://example.com/"), max_scans=3)
    for _ in range(2):
        assert (await scan(edge_app, code["slug"], query="?qr=1", user_agent=IPHONE)).status_code == 302
    for _ in range(5):  # a chat app's link preview and HEAD checks are bots: they use up nothing
        await scan(edge_app, code["slug"], user_agent=PREVIEWER)
        await scan(edge_app, code["slug"], method="HEAD", user_agent=IPHONE)
    await ingest(worker, redis, redis_namespace)
    assert (await scan(edge_app, code["slug"], query="?qr=1", user_agent=IPHONE)).status_code == 302  # the 3rd
    await ingest(worker, redis, redis_namespace)
    await settled(edge_app, code["slug"], 410)
    over = await scan(edge_app, code["slug"], query="?qr=1", user_agent=IPHONE)
    assert over.status_code == 410 and b"expired" in over.content
    await ingest(worker, redis, redis_namespace)
    listed = await api.get("/v1/events?type=qr.expired", headers=bearer(key))
    assert listed.status_code == 200, listed.text
    events = listed.json()["data"]
    assert [e["data"]["object"]["reason"] for e in events] == ["max_scans"]  # once, however often it is swept
    await patch(api, key, f"/v1/qr-codes/{code['id']}", max_scans=10)  # raising the limit opens it again
    assert (await scan(edge_app, code["slug"], user_agent=IPHONE)).status_code == 302


async def test_an_inherited_limit_counts_each_codes_own_scans(
        api: httpx.AsyncClient, edge_app: EdgeApp, make_key: KeyFactory, worker: IngestWorker,
        redis: aioredis.Redis, redis_namespace: str) -> None:
    key = await make_key()
    group = await create(api, key, "/v1/qr-groups", destination=url("https://example.com/"), max_scans=1,
                         expired_destination=url("https://example.com/over"))
    first, second = [await create(api, key, group_id=group["id"]) for _ in range(2)]
    await scan(edge_app, first["slug"], user_agent=IPHONE)
    await ingest(worker, redis, redis_namespace)
    await settled(edge_app, first["slug"], "https://example.com/over")
    assert (await scan(edge_app, first["slug"], user_agent=IPHONE)).headers["location"] == "https://example.com/over"
    assert (await scan(edge_app, second["slug"], user_agent=IPHONE)).headers["location"] == "https://example.com/"


async def test_analytics_break_scans_down_by_rule_and_variant(
        api: httpx.AsyncClient, edge_app: EdgeApp, make_key: KeyFactory, worker: IngestWorker,
        redis: aioredis.Redis, redis_namespace: str) -> None:
    key = await make_key()
    code = await create(api, key, destination=url("https://example.com/"),
                        rules=[{"if": {"device": ["ios"]}, "destination": url("https://example.com/ios")}],
                        split=[{"weight": 1, "destination": url("https://example.com/a")},
                               {"weight": 1, "destination": url("https://example.com/b")}])
    for n in range(2):
        await scan(edge_app, code["slug"], user_agent=f"{IPHONE} {n}")
    for n in range(6):
        await scan(edge_app, code["slug"], user_agent=f"{WINDOWS} {n}")
    await ingest(worker, redis, redis_namespace)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    window = {"since": timestamp(hour - timedelta(hours=1)), "until": timestamp(hour + timedelta(hours=2))}
    report = (await api.get(f"/v1/qr-codes/{code['id']}/scans", params=window, headers=bearer(key))).json()
    assert report["breakdowns"]["rule"] == \
        [{"rule": None, "scans": 6}, {"rule": 0, "scans": 2}]
    variants = {entry["variant"]: entry["scans"] for entry in report["breakdowns"]["variant"]}
    assert variants[None] == 2 and variants.get(0, 0) + variants.get(1, 0) == 6
    assert report["breakdowns"]["outcome"] == [{"outcome": "redirected", "scans": 8}]

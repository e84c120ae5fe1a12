from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from edge.app import EdgeApp
from shared.keys import SCAN_FIELD, RedisKeys
from shared.scan_event import ScanEvent
from shared.settings import EdgeSettings
from tests.conftest import KeyFactory, bearer
from tests.shared.test_geo import build_country_db


@pytest.fixture
async def edge(env: dict[str, str], tmp_path: Path) -> AsyncIterator[EdgeApp]:
    settings = EdgeSettings.from_env({**env, "GEOIP_DB": str(build_country_db(tmp_path / "c.mmdb")),
                                      "TRUSTED_COUNTRY_HEADER": "CF-IPCountry"})
    app = EdgeApp(settings)
    await app.startup()
    try:
        yield app
    finally:
        await app.shutdown()


async def scan_from(app: EdgeApp, ip: str, slug: str, headers: dict[str, str] | None = None) -> None:
    transport = httpx.ASGITransport(app=app, client=(ip, 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://qr.test") as client:
        assert (await client.get(f"/{slug}?qr=1", headers=headers)).status_code == 302


async def test_country_comes_from_the_trusted_header_else_the_geoip_database(
        api: httpx.AsyncClient, edge: EdgeApp, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str) -> None:
    key = await make_key()
    code = (await api.post("/v1/qr-codes", headers=bearer(key),
                           json={"destination": {"type": "url", "url": "https://example.com/"}})).json()
    await scan_from(edge, "203.0.113.7", code["slug"])
    await scan_from(edge, "203.0.113.7", code["slug"], {"CF-IPCountry": "fr"})
    await scan_from(edge, "10.1.2.3", code["slug"])
    entries = await redis.xrange(RedisKeys(redis_namespace).scans)
    assert [ScanEvent.decode(fields[SCAN_FIELD]).country for _, fields in entries] == ["AU", "FR", None]

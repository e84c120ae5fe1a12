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
from tests.edge.conftest import edge_client
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


async def test_behind_trusted_proxies_the_country_header_is_believed_from_them_only(
        env: dict[str, str], api: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str, server_kind: str, tmp_path: Path) -> None:
    """With TRUSTED_PROXIES set, a visitor who reaches the edge directly cannot pick the country that analytics
    record and `country` rules act on: the header counts only from a trusted proxy, else the GeoIP database
    answers for the client's address. Without TRUSTED_PROXIES the header is believed as configured
    (docs/edge.md)."""
    key = await make_key()
    code = (await api.post("/v1/qr-codes", headers=bearer(key),
                           json={"destination": {"type": "url", "url": "https://example.com/"}})).json()
    base = {**env, "GEOIP_DB": str(build_country_db(tmp_path / "c.mmdb")), "TRUSTED_COUNTRY_HEADER": "CF-IPCountry"}
    claimed = {"CF-IPCountry": "FR", "X-Forwarded-For": "198.51.100.7"}  # 198.51.100.7: DE in the database
    peers = "127.0.0.1/32, 203.0.113.7"  # the test peers of both servers
    for trusted in ("10.0.0.0/8", peers, "-"):
        async with edge_client({**base, "TRUSTED_PROXIES": trusted}, server_kind) as (_, edge):
            assert (await edge.get(f"/{code['slug']}?qr=1", headers=claimed)).status_code == 302
    async with edge_client({**base, "TRUSTED_PROXIES": peers}, server_kind) as (_, edge):
        forwarded = {"X-Forwarded-For": "198.51.100.7"}
        assert (await edge.get(f"/{code['slug']}?qr=1", headers=forwarded)).status_code == 302
    entries = await redis.xrange(RedisKeys(redis_namespace).scans)
    peer_country = "AU" if server_kind == "asgi" else None  # 203.0.113.7 is AU; 127.0.0.1 is in no country
    assert [ScanEvent.decode(fields[SCAN_FIELD]).country for _, fields in entries] == [
        peer_country,  # an untrusted peer claims FR: its own address's country
        "FR",  # a trusted proxy says FR
        "FR",  # no TRUSTED_PROXIES: believed as configured
        "DE",  # a trusted proxy without the header: the forwarded client's address
    ]

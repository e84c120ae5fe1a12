"""Test harness: real PostgreSQL and Redis, one cloned database and one Redis key namespace per test.

With DATABASE_URL and REDIS_URL unset, the controlling pytest process starts private servers (the
embedded default) and hands their URLs to xdist workers through the environment. A migrated template
database is made once per run; every test gets its own copy, dropped afterwards, and its own Redis key
namespace, deleted afterwards — nothing is left behind in servers given by URL.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from control_plane.api.app import create_app
from control_plane.cli.migrate import migrate
from control_plane.services.keys import create_key, ensure_org
from shared.embedded import EmbeddedServices, needed_servers, temporary_root
from shared.settings import ControlPlaneSettings, EdgeSettings, IngestSettings
from tests.edge.private_redis import PrivateRedis
from tests.local_dns import LocalDNS, local_dns
from tests.pg_proxy import Proxy

TEMPLATE_VAR = "SCANROUTE_TEST_TEMPLATE"
_services: EmbeddedServices | None = None


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def _admin(sql: str, url: str | None = None) -> None:
    conn = await asyncpg.connect(url or os.environ["DATABASE_URL"], timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _make_template(name: str) -> None:
    await _admin(f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(with_database(os.environ["DATABASE_URL"], name), timeout=10)
    try:
        await migrate(conn)
    finally:
        await conn.close()


def pytest_configure(config: pytest.Config) -> None:
    global _services
    if hasattr(config, "workerinput"):  # an xdist worker: the controller prepared everything
        return
    postgres, redis = needed_servers(os.environ)
    if postgres or redis:  # only the servers whose URL is not given, as `scanroute up` (docs/operations.md)
        _services = EmbeddedServices(temporary_root("scanroute-test-"), persistent=False, postgres=postgres,
                                     redis=redis)
        _services.start()
        if postgres:
            os.environ["DATABASE_URL"] = _services.database_url
        if redis:
            os.environ["REDIS_URL"] = _services.redis_url
    template = f"scanroute_tmpl_{secrets.token_hex(6)}"
    asyncio.run(_make_template(template))
    os.environ[TEMPLATE_VAR] = template


def pytest_unconfigure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    template = os.environ.pop(TEMPLATE_VAR, None)
    if template:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)'))
    if _services is not None:
        _services.stop()
        shutil.rmtree(_services.root, ignore_errors=True)


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    name = f"scanroute_t_{secrets.token_hex(6)}"
    await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{os.environ[TEMPLATE_VAR]}"')
    try:
        yield with_database(os.environ["DATABASE_URL"], name)
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def redis_namespace() -> AsyncIterator[str]:
    namespace = f"t{secrets.token_hex(6)}"
    yield namespace
    client = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        keys = [k async for k in client.scan_iter(match=f"{namespace}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def env(database_url: str, redis_namespace: str) -> dict[str, str]:
    """The environment every process kind of one test reads its settings from."""
    return {
        "DATABASE_URL": database_url, "REDIS_URL": os.environ["REDIS_URL"], "REDIS_NAMESPACE": redis_namespace,
        "DEFAULT_DOMAIN": "qr.test", "PUBLIC_SCHEME": "https",
        "SCAN_HASH_SECRET": "test-secret-0123456789",
        "CONTROL_PLANE_PUBLIC_URL": "http://cp.test",  # the base URL of the `api` fixture's client
        "PAGE_URL_TEMPLATE": "https://pages.example.com/p/{id}",
        "CHATBOT_URL_TEMPLATE": "https://chat.example.com/c/{id}",
        "KNOWLEDGE_BASE_URL_TEMPLATE": "https://kb.example.com/k/{id}",
        "CACHE_SYNC_INTERVAL": "0",  # tests that need it drive CacheSync themselves
    }


@pytest.fixture
def cp_settings(env: dict[str, str]) -> ControlPlaneSettings:
    return ControlPlaneSettings.from_env(env)


@pytest.fixture
def edge_settings(env: dict[str, str]) -> EdgeSettings:
    return EdgeSettings.from_env(env)


@pytest.fixture
def ingest_settings(env: dict[str, str]) -> IngestSettings:
    return IngestSettings.from_env({**env, "INGEST_CONSUMER": "test-worker", "INGEST_BLOCK_MS": "50"})


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def redis(redis_namespace: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def api(cp_settings: ControlPlaneSettings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the control plane app in this process (lifespan run)."""
    app = create_app(cp_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://cp.test") as client:
            yield client


KeyFactory = Callable[..., Awaitable[str]]


@pytest.fixture
def make_key(database_url: str) -> KeyFactory:
    """Create an organisation (if needed) and an API key; returns the secret."""

    async def make(org: str = "acme", *, scopes: tuple[str, ...] = ("qr:read", "qr:write"),
                   livemode: bool = True) -> str:
        conn = await asyncpg.connect(database_url, timeout=10)
        try:
            org_id = await ensure_org(conn, org)
            return (await create_key(conn, org_id, livemode=livemode, scopes=list(scopes))).secret
        finally:
            await conn.close()

    return make


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[Proxy]:
    """A TCP proxy in front of the test's PostgreSQL, which the test may cut and start again."""
    parts = urlsplit(database_url)
    running = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await running.start()
    try:
        yield running
    finally:
        await running.cut()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A Redis of the test's own, which it may stop, pause or restart."""
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def dns() -> AsyncIterator[LocalDNS]:
    """A name server on 127.0.0.1 answering what a test puts in `answers` (tests/local_dns.py)."""
    async with local_dns() as running:
        yield running

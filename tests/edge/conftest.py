"""Edge fixtures: the edge app in this process, with its journal in the test's own folder.

`edge` is parametrised over both servers (the protocol server on a real socket, and the ASGI app), so
the edge test suite proves they answer alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
import redis.exceptions

from control_plane.api.app import create_app
from control_plane.services.cache import EdgeCache
from control_plane.services.cache_sync import CacheSync
from edge.app import EdgeApp
from edge.redis_repair import NEWEST
from edge.server import EdgeServer
from shared.keys import RedisKeys, cache_sync_cursor
from shared.listen import listen
from shared.outbox import OutboxPosition
from shared.settings import ControlPlaneSettings, EdgeSettings
from tests.edge.private_redis import PrivateRedis


@pytest.fixture
def env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    # The ASGI tests' client (serving(): 203.0.113.7) may read /readyz and /metrics, as loopback may.
    return {**env, "EDGE_JOURNAL_DIR": str(tmp_path / "journal"), "EDGE_OPS_FROM": "127.0.0.0/8, ::1, 203.0.113.7"}


async def repair(env: dict[str, str], *, caught_up: bool = False) -> None:
    """One pass of the control plane's cache sync (the tests' control planes do not run it by themselves);
    `caught_up`: passes until its cursor has reached the newest event — another test's transaction still open
    in the same cluster holds the sync's horizon back (docs/freshness.md), as the sync's next passes would."""
    redis = aioredis.Redis.from_url(env["REDIS_URL"])
    db = await asyncpg.create_pool(env["DATABASE_URL"], min_size=1, max_size=2)
    namespace = env["REDIS_NAMESPACE"]
    try:
        sync = CacheSync(db, EdgeCache(redis, RedisKeys(namespace)), namespace)
        async with asyncio.timeout(30):
            while True:
                await sync.run_once()
                newest = await db.fetchrow(NEWEST)
                cursor = await redis.get(cache_sync_cursor(namespace))
                if not caught_up or newest is None or (
                        cursor is not None and OutboxPosition.decode(cursor) >= OutboxPosition(*newest)):
                    return
                await asyncio.sleep(0.1)
    finally:
        await db.close()
        await redis.aclose()


async def synced(env: dict[str, str]) -> None:
    """Before an edge starts: the cache sync has been through this Redis, as every control plane's does within
    a second of starting — until then an edge reads rows from PostgreSQL (docs/freshness.md). Nothing to do
    for a test that starts its edge without Redis."""
    try:
        await repair(env, caught_up=True)
    except (OSError, redis.exceptions.ConnectionError):
        pass


@pytest.fixture
async def edge_app(edge_settings: EdgeSettings, env: dict[str, str]) -> AsyncIterator[EdgeApp]:
    await synced(env)
    app = EdgeApp(edge_settings)
    await app.startup()
    try:
        yield app
    finally:
        await app.shutdown()


SERVERS = ("protocol", "asgi")


@pytest.fixture(params=SERVERS)
def server_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def edge(edge_app: EdgeApp, server_kind: str) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(edge_app, server_kind) as client:
        yield client


@asynccontextmanager
async def protocol_server(app: EdgeApp) -> AsyncIterator[EdgeServer]:
    """The protocol server on a free port of 127.0.0.1, in this event loop."""
    sock = listen(("127.0.0.1", 0))
    server = EdgeServer(app, sock)
    await server.start()
    try:
        yield server
    finally:
        await server.drain()
        sock.close()


def address(server: EdgeServer) -> tuple[str, int]:
    host, port = server.sock.getsockname()[:2]
    return host, port


@asynccontextmanager
async def serving(app: EdgeApp, kind: str) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client of `app` served by `kind`; requests name the host `qr.test`."""
    if kind == "asgi":
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://qr.test") as client:
            yield client
        return
    async with protocol_server(app) as server:
        host, port = address(server)
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", headers={"host": "qr.test"}) as client:
            yield client


@pytest.fixture
def private_env(env: dict[str, str], private_redis: PrivateRedis) -> dict[str, str]:
    """The test's environment with Redis replaced by one the test may stop."""
    return {**env, "REDIS_URL": private_redis.url}


@asynccontextmanager
async def control_plane(env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ControlPlaneSettings.from_env(env))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://cp.test") as client:
            yield client


@asynccontextmanager
async def edge_client(env: dict[str, str], kind: str = "protocol") -> AsyncIterator[tuple[EdgeApp, httpx.AsyncClient]]:
    await synced(env)
    app = EdgeApp(EdgeSettings.from_env(env))
    await app.startup()
    try:
        async with serving(app, kind) as client:
            yield app, client
    finally:
        await app.shutdown()

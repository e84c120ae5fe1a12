"""Edge fixtures: the edge app in this process, with its journal in the test's own folder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from control_plane.api.app import create_app
from edge.app import EdgeApp
from shared.settings import ControlPlaneSettings, EdgeSettings
from tests.edge.private_redis import PrivateRedis


@pytest.fixture
def env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**env, "EDGE_JOURNAL_DIR": str(tmp_path / "journal")}


@pytest.fixture
async def edge_app(edge_settings: EdgeSettings) -> AsyncIterator[EdgeApp]:
    app = EdgeApp(edge_settings)
    await app.startup()
    try:
        yield app
    finally:
        await app.shutdown()


@pytest.fixture
async def edge(edge_app: EdgeApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=edge_app, client=("203.0.113.7", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://qr.test") as client:
        yield client


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
async def edge_client(env: dict[str, str]) -> AsyncIterator[tuple[EdgeApp, httpx.AsyncClient]]:
    app = EdgeApp(EdgeSettings.from_env(env))
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://qr.test") as client:
            yield app, client
    finally:
        await app.shutdown()

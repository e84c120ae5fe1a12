"""Edge fixtures: the edge app in this process, with its journal in the test's own folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from edge.app import EdgeApp
from shared.settings import EdgeSettings


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

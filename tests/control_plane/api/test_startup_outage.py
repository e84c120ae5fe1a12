"""The control plane starts while PostgreSQL is away (a database restart, a stack starting in any order): /healthz
answers 200, /readyz and the API 503, and once PostgreSQL answers it reads its image URL secret and serves
everything (docs/operations.md, "Processes")."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from control_plane.api.app import create_app
from shared.settings import ControlPlaneSettings
from tests.conftest import ROOT, KeyFactory, bearer
from tests.control_plane.webhooks.test_database_outage import Proxy
from tests.ports import free_port


@pytest.fixture
async def database_away(database_url: str) -> AsyncIterator[tuple[Proxy, str]]:
    """A proxy to the test's database, not listening yet, and the DATABASE_URL through it."""
    parts = urlsplit(database_url)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    await proxy.cut()
    try:
        yield proxy, urlunsplit(parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"))
    finally:
        if proxy.server is not None and proxy.server.is_serving():
            await proxy.cut()


async def test_the_control_plane_starts_while_postgresql_is_down_and_serves_once_it_is_back(
        env: dict[str, str], database_away: tuple[Proxy, str], make_key: KeyFactory) -> None:
    proxy, via = database_away
    key = await make_key()
    app = create_app(ControlPlaneSettings.from_env({**env, "DATABASE_URL": via}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://cp.test") as api:
            assert (await api.get("/healthz")).status_code == 200
            assert (await api.get("/readyz")).status_code == 503
            listing = await api.get("/v1/qr-codes", headers=bearer(key))
            assert listing.status_code == 503 and listing.headers["retry-after"] == "1"
            await proxy.start()
            deadline = time.monotonic() + 5
            while (await api.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, (await api.get("/readyz")).text
                await asyncio.sleep(0.1)
            created = await api.post("/v1/qr-codes", headers=bearer(key),
                                     json={"destination": {"type": "url", "url": "https://example.com/"}})
            assert created.status_code == 201, created.text
            assert created.json()["image_url"].startswith("http://cp.test/i/")


def test_scanroute_control_plane_keeps_running_while_postgresql_is_down(env: dict[str, str],
                                                                        tmp_path: Path) -> None:
    port = free_port()
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    dead = {"DATABASE_URL": f"postgresql://postgres:nope@127.0.0.1:{free_port()}/scanroute",
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    process = subprocess.Popen([sys.executable, "-m", "control_plane.cli", "control-plane"], cwd=tmp_path,
                               env={**base, **env, **dead, "PYTHONPATH": str(ROOT),
                                    "CONTROL_PLANE_BIND": f"127.0.0.1:{port}"},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline, healthy = time.monotonic() + 15, False
        while time.monotonic() < deadline and process.poll() is None and not healthy:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                    healthy = response.status == 200
            except OSError:
                time.sleep(0.2)
        assert process.poll() is None, f"exited with {process.returncode}"
        assert healthy
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode(errors="replace")
    assert "Traceback" not in output, output[-3000:]

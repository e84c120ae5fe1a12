"""The whole spine with real processes: API write → PostgreSQL → Redis → edge 302 → stream → ingest → row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from shared.processes import spawn, stop
from tests.conftest import KeyFactory, bearer
from tests.ports import free_port

PAGE = "a1c2e4f6-8b0d-4e2a-9c1b-3d5e7f9a2c4e"
BOT = "0b7e2f3c-1111-4a5b-8c9d-0e1f2a3b4c5d"
pytestmark = pytest.mark.e2e


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{url} process exited with {process.returncode}"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not become healthy")


@pytest.fixture
def stack(env: dict[str, str]) -> Iterator[dict[str, str]]:
    cp_port, edge_port = free_port(), free_port()
    full_env = {**os.environ, **env, "CONTROL_PLANE_BIND": f"127.0.0.1:{cp_port}",
                "EDGE_BIND": f"127.0.0.1:{edge_port}", "DEFAULT_DOMAIN": f"127.0.0.1:{edge_port}",
                "INGEST_BLOCK_MS": "50", "CACHE_SYNC_INTERVAL": "0.2"}
    processes = {kind: spawn([sys.executable, "-m", "control_plane.cli", kind], env=full_env)
                 for kind in ("control-plane", "edge", "ingest")}
    try:
        wait_healthy(f"http://127.0.0.1:{cp_port}/healthz", processes["control-plane"])
        wait_healthy(f"http://127.0.0.1:{edge_port}/healthz", processes["edge"])
        yield {"api": f"http://127.0.0.1:{cp_port}", "edge": f"http://127.0.0.1:{edge_port}"}
    finally:
        codes = {kind: stop(p, signal.SIGTERM) for kind, p in processes.items()}
    # uvicorn re-raises SIGTERM after its graceful shutdown; -9 would mean stop() had to kill.
    assert all(code in (0, -signal.SIGTERM) for code in codes.values()), codes


async def test_seed_example_end_to_end(stack: dict[str, str], make_key: KeyFactory, database_url: str) -> None:
    key = await make_key()
    async with httpx.AsyncClient(base_url=stack["api"], headers=bearer(key)) as api, \
            httpx.AsyncClient(base_url=stack["edge"]) as edge:
        group = (await api.post("/v1/qr-groups", json={
            "name": "Fall 2024 tabletop run", "status": "active", "destination": {"type": "page", "page": PAGE},
            "url_params": {"utm_campaign": "fall24", "utm_medium": "print"}})).json()
        inheriting = (await api.post("/v1/qr-codes", json={
            "group_id": group["id"], "url_params": {"utm_medium": "table"}})).json()
        overriding = (await api.post("/v1/qr-codes", json={
            "group_id": group["id"], "destination": {"type": "chatbot", "chatbot": BOT}})).json()

        async def scan(code: dict[str, Any], query: str = "?qr=1") -> httpx.Response:
            return await edge.get(f"/{code['slug']}{query}", headers={"user-agent": "Mozilla/5.0 (iPhone)"})

        first = await scan(inheriting, "?qr=1&utm_source=email")
        assert first.status_code == 302
        assert first.headers["location"] == \
            f"https://pages.example.com/p/{PAGE}?utm_campaign=fall24&utm_medium=table&utm_source=email"
        second = await scan(overriding)
        assert second.headers["location"].startswith(f"https://chat.example.com/c/{BOT}?utm_campaign=fall24")

        patched = await api.patch(f"/v1/qr-groups/{group['id']}", json={
            "destination": {"type": "url", "url": "https://menu.example.com/fall"}})
        assert patched.status_code == 200
        rerouted = await scan(inheriting)
        assert rerouted.headers["location"] == \
            "https://menu.example.com/fall?utm_campaign=fall24&utm_medium=table"
        assert (await scan(overriding)).headers["location"].startswith("https://chat.example.com/")

        await api.patch(f"/v1/qr-groups/{group['id']}", json={"status": "inactive"})
        assert (await scan(inheriting)).status_code == 404
        expected = {inheriting["id"]: 3, overriding["id"]: 2}

    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if await conn.fetchval("SELECT count(*) FROM scans") >= 5:
                break
            time.sleep(0.05)
        rows = await conn.fetch("SELECT code_id, count(*) AS n, count(DISTINCT scan_id) AS distinct_ids"
                                " FROM scans GROUP BY code_id")
        assert {r["code_id"]: r["n"] for r in rows} == expected
        assert all(r["n"] == r["distinct_ids"] for r in rows)
        counts = await conn.fetch("SELECT id, scan_count FROM qr_codes")
        assert {r["id"]: r["scan_count"] for r in counts} == expected
    finally:
        await conn.close()

"""The `scanroute jobs` process rides out PostgreSQL outages instead of exiting (found by `make chaos`: under
`scanroute up` it crashed twice per outage, at the claim and again at start-up while the database was down)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from shared.processes import spawn, stop
from tests.conftest import KeyFactory, bearer
from tests.control_plane.jobs.conftest import mint_group
from tests.pg_proxy import Proxy

pytestmark = pytest.mark.e2e


async def _export_succeeds(api: httpx.AsyncClient, key: str, group_id: str, worker_alive: object) -> None:
    started = await api.post("/v1/exports", headers=bearer(key),
                             json={"format": "zip", "group_id": group_id, "image_format": "svg"})
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 60
    while (await api.get(f"/v1/exports/{started.json()['id']}", headers=bearer(key))).json()["status"] != "succeeded":
        assert worker_alive() and time.monotonic() < deadline  # type: ignore[operator]
        await asyncio.sleep(0.05)


async def test_the_worker_waits_out_postgresql_outages_at_start_and_while_running(
        api: httpx.AsyncClient, make_key: KeyFactory, env: dict[str, str], database_url: str, proxy: Proxy,
        tmp_path: Path) -> None:
    key = await make_key()
    group_id, _ = await mint_group(api, key, 3)
    via_proxy = proxy.url(database_url)
    await proxy.cut()  # PostgreSQL unreachable when the worker starts
    log = tmp_path / "jobs.log"
    with log.open("wb") as output:
        worker = spawn([sys.executable, "-m", "control_plane.cli", "jobs"], stdout=output, stderr=output,
                       env={**os.environ, **env, "DATABASE_URL": via_proxy, "JOBS_POLL_INTERVAL": "0.05"})
    try:
        deadline = time.monotonic() + 60
        while b"waiting for the database" not in log.read_bytes():  # it tried, and says it waits
            assert worker.poll() is None, f"the worker exited while PostgreSQL was unreachable:\n{log.read_text()}"
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await asyncio.sleep(1)
        assert worker.poll() is None
        await proxy.start()
        await _export_succeeds(api, key, group_id, lambda: worker.poll() is None)

        await proxy.cut()  # and while it runs
        await asyncio.sleep(2)
        assert worker.poll() is None, "the worker exited during a PostgreSQL outage"
        await proxy.start()
        await _export_succeeds(api, key, group_id, lambda: worker.poll() is None)
    finally:
        # In a thread: the proxy runs on this event loop, and the worker's goodbye to PostgreSQL goes through it.
        assert await asyncio.to_thread(stop, worker, signal.SIGTERM) == 0

"""The real `scanroute webhooks` process: killed with SIGKILL mid-run, restarted, nothing lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import asyncpg
import httpx
import pytest

from shared.outbox import record_event
from shared.processes import spawn, stop
from tests.conftest import KeyFactory
from tests.control_plane.webhooks.conftest import WEBHOOK_SCOPES, Receiver, create_endpoint

pytestmark = pytest.mark.e2e
EVENTS = 1000


async def wait_for(condition: Callable[[], bool], process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"dispatcher exited with {process.returncode}"
        assert time.monotonic() < deadline, "timed out waiting for the dispatcher"
        await asyncio.sleep(0.005)


def dispatcher_process(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return spawn([sys.executable, "-m", "control_plane.cli", "webhooks"],
                 env={**os.environ, **env, "WEBHOOK_CONCURRENCY": "10", "WEBHOOK_ENDPOINT_CONCURRENCY": "4",
                      "WEBHOOK_LEASE": "20", "WEBHOOK_POLL_INTERVAL": "0.05"})


async def test_kill_9_mid_run_then_restart_delivers_every_event(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, env: dict[str, str],
        pool: asyncpg.Pool) -> None:
    key = await make_key(scopes=WEBHOOK_SCOPES)
    endpoint = await create_endpoint(api, key, receiver.url())
    org_id = await pool.fetchval("SELECT org_id FROM webhook_endpoints WHERE id = $1", endpoint["id"])
    async with pool.acquire() as conn, conn.transaction():  # the outbox writer every change path uses
        event_ids = {await record_event(conn, org_id, True, "qr.created", {"id": f"qr_{n:04d}", "object": "qr"})
                     for n in range(EVENTS)}
    receiver.delay = 0.02  # slow enough that the kill lands mid-run

    first = dispatcher_process(env)
    try:
        await wait_for(lambda: len(receiver.requests) >= EVENTS // 4, first, timeout=60)
    finally:
        first.kill()
        first.wait()
    succeeded = await pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'")
    assert succeeded < EVENTS, "the kill came too late to test anything"

    # Restart as two dispatchers side by side: SKIP LOCKED keeps them off each other's rows.
    restarted = [dispatcher_process(env), dispatcher_process(env)]
    try:
        deadline = time.monotonic() + 90
        while await pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'") < EVENTS:
            assert all(p.poll() is None for p in restarted) and time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        codes = [stop(p, signal.SIGTERM) for p in restarted]
    assert codes == [0, 0], "SIGTERM drains and exits cleanly"

    assert {r.headers["webhook-id"] for r in receiver.requests} == event_ids  # at least once each
    assert await pool.fetchval("SELECT count(*) FROM events WHERE dispatched_at IS NULL") == 0
    rows = await pool.fetch("SELECT d.event_id, d.attempt_count, count(a.*) AS recorded,"
                          " count(a.*) FILTER (WHERE a.status_code = 200) AS ok"
                          " FROM webhook_deliveries d LEFT JOIN webhook_attempts a ON a.delivery_id = d.id"
                          " GROUP BY d.id")
    assert {r["event_id"] for r in rows} == event_ids
    assert all(r["ok"] == 1 and r["recorded"] == r["attempt_count"] for r in rows)
    # Only what was in flight at the kill (one endpoint: WEBHOOK_ENDPOINT_CONCURRENCY=4) can have been sent
    # twice; its leases expired 20 s later.
    assert len(receiver.requests) - EVENTS <= 4

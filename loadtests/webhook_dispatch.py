"""How fast one `scanroute webhooks` process drains a backlog to a receiver that answers at once, and
how long another organisation's single event waits meanwhile (docs/webhooks.md "Fairness").

    flock /tmp/scanroute-heavy.lock .venv/bin/python -m loadtests.webhook_dispatch [EVENTS]

Private PostgreSQL/Redis servers unless DATABASE_URL is set (then a scratch database is created in it).
The receiver is an aiohttp server in this process; the dispatcher is the real process kind.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import sys
import time

import asyncpg
from aiohttp import web

from control_plane.cli.migrate import migrate
from control_plane.services.keys import ensure_org
from control_plane.webhooks.signing import new_secret
from shared.database import create_pool
from shared.embedded import EmbeddedServices, temporary_root
from shared.ids import new_id
from shared.outbox import record_event
from shared.processes import spawn, stop


async def bench(server_url: str, events: int) -> None:
    name = f"scanroute_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url, timeout=10)
    await admin.execute(f'CREATE DATABASE "{name}"')
    database_url = server_url.rsplit("/", 1)[0] + f"/{name}"
    received = 0
    other_arrived = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        nonlocal received
        await request.read()
        received += 1
        return web.Response(text="ok")

    async def handle_other(request: web.Request) -> web.Response:
        await request.read()
        other_arrived.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    app.router.add_post("/other", handle_other)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    pool = await create_pool(database_url)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
            org_id = await ensure_org(conn, "bench")
            other_org = await ensure_org(conn, "bench-other")
            for owner, path in ((org_id, "hook"), (other_org, "other")):
                await conn.execute("INSERT INTO webhook_endpoints (id, org_id, livemode, url, events, secret)"
                                   " VALUES ($1, $2, true, $3, '{*}', $4)",
                                   new_id("we"), owner, f"http://127.0.0.1:{port}/{path}", new_secret())
            async with conn.transaction():
                for n in range(events):
                    await record_event(conn, org_id, True, "qr.created", {"id": f"qr_{n}", "object": "qr"})
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": "redis://unused:6379/0",
               "OUTBOUND_ALLOWED_HOSTS": "127.0.0.1", "WEBHOOK_ALLOW_HTTP": "true", "WEBHOOK_POLL_INTERVAL": "0.05"}
        started = time.monotonic()
        process = spawn([sys.executable, "-m", "control_plane.cli", "webhooks"], env=env)
        try:
            while received < events // 10:  # the backlog is being delivered: now another organisation's event
                assert process.poll() is None and time.monotonic() - started < 600
                await asyncio.sleep(0.01)
            async with pool.acquire() as conn:
                await record_event(conn, other_org, True, "qr.created", {"id": "qr_other", "object": "qr"})
            enqueued, backlog_at_enqueue = time.monotonic(), received
            await asyncio.wait_for(other_arrived.wait(), 600)
            other_wait, backlog_meanwhile = time.monotonic() - enqueued, received - backlog_at_enqueue
            succeeded = "SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'"
            while await pool.fetchval(succeeded) < events + 1:
                assert process.poll() is None and time.monotonic() - started < 600
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - started
        finally:
            stop(process, signal.SIGTERM)
        sys.stdout.write(f"{events} events delivered in {elapsed:.2f} s ({events / elapsed:.0f}/s, process start"
                         f" included); receiver saw {received} requests\n"
                         f"another organisation's event, queued behind {events - backlog_at_enqueue} of them:"
                         f" delivered in {other_wait * 1000:.0f} ms (the backlog got {backlog_meanwhile} meanwhile)\n")
    finally:
        await pool.close()
        await runner.cleanup()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    if os.environ.get("DATABASE_URL"):
        asyncio.run(bench(os.environ["DATABASE_URL"], events))
        return
    root = temporary_root("scanroute-bench-")
    try:
        with EmbeddedServices(root, persistent=False) as services:
            asyncio.run(bench(services.database_url, events))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

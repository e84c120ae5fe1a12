"""A request whose PostgreSQL session is ended by the server (a shutdown, `pg_terminate_backend`) is a 503
problem+json with `Retry-After`, like any other database outage (docs/api.md §1), never a 500."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest

from control_plane.api.app import create_app
from shared.settings import ControlPlaneSettings
from tests.conftest import KeyFactory, bearer

BOUND = 30.0  # seconds; a bound on a wait, not a measurement


@pytest.mark.parametrize("ending", [
    "pg_terminate_backend",  # what PostgreSQL's fast shutdown does to every session: FATAL 57P01, admin_shutdown
    "pg_cancel_backend",  # an operator cancelling a stuck query, or a statement_timeout: 57014, query_canceled
])
async def test_a_query_ended_by_the_server_is_a_503(
        api: httpx.AsyncClient, make_key: KeyFactory, db: asyncpg.Connection[Any], ending: str) -> None:
    key = await make_key()
    async with db.transaction():
        await db.execute("LOCK TABLE qr_codes IN ACCESS EXCLUSIVE MODE")  # the API's list waits behind it
        listing = asyncio.create_task(api.get("/v1/qr-codes", headers=bearer(key)))
        waiting = None
        for _ in range(int(BOUND * 10)):
            waiting = await db.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")
            if waiting:
                break
            await asyncio.sleep(0.1)
        assert waiting, "the API's query never waited for the lock"
        assert await db.fetchval(f"SELECT {ending}($1)", waiting)
        response = await asyncio.wait_for(listing, BOUND)
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "retry-after" in response.headers


async def test_a_write_to_a_read_only_database_is_a_503(
        cp_settings: ControlPlaneSettings, make_key: KeyFactory, db: asyncpg.Connection[Any]) -> None:
    """A failover that lands on a standby, or a provider's read-only mode on a full disk (SQLSTATE 25006): the
    write succeeds once PostgreSQL takes writes again, so it is retried like an outage, not a 500."""
    key = await make_key()
    name = await db.fetchval("SELECT current_database()")
    await db.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')  # every new session
    app = create_app(cp_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://cp.test") as api:
            assert (await api.get("/v1/qr-codes", headers=bearer(key))).status_code == 200
            response = await api.post("/v1/qr-codes", headers=bearer(key), json={})
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "retry-after" in response.headers

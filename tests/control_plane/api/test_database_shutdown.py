"""A request whose PostgreSQL session is ended by the server (a shutdown, `pg_terminate_backend`) is a 503
problem+json with `Retry-After`, like any other database outage (docs/api.md §1), never a 500."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx

from tests.conftest import KeyFactory, bearer

BOUND = 30.0  # seconds; a bound on a wait, not a measurement


async def test_a_query_ended_by_a_server_shutdown_is_a_503(
        api: httpx.AsyncClient, make_key: KeyFactory, db: asyncpg.Connection[Any]) -> None:
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
        # What PostgreSQL's fast shutdown does to every session: FATAL 57P01, admin_shutdown.
        assert await db.fetchval("SELECT pg_terminate_backend($1)", waiting)
        response = await asyncio.wait_for(listing, BOUND)
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "retry-after" in response.headers

"""A deliberately small migration runner over numbered `.sql` files.

Each file is applied once, in order, inside its own transaction, and recorded in `schema_migrations`.
An advisory lock serialises concurrent runners (several processes starting at once).
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

import asyncpg

from shared.database import connect

log = logging.getLogger(__name__)
_LOCK_ID = 0x5CA9_2017


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("control_plane") / "migrations"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), (folder / name).read_text()) for name in names]


async def migrate(conn: asyncpg.Connection[Any]) -> list[str]:
    """Apply every pending migration; returns the versions applied now."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
    applied_now = []
    for version, sql in migration_files():
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
            done = await conn.fetchval("SELECT 1 FROM schema_migrations WHERE version = $1", version)
            if done:
                continue
            log.info("applying migration %s", version)
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied_now.append(version)
    return applied_now


async def migrate_url(dsn: str) -> list[str]:
    conn = await connect(dsn)
    try:
        return await migrate(conn)
    finally:
        await conn.close()

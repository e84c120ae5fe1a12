"""What every service call needs below HTTP: the database, the cache write-through and the settings.

Built once at start-up (the control plane's lifespan, a CLI command, a job worker) and passed down, so
every caller gets the same queries, rules, events and edge freshness.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

import asyncpg

from control_plane.services.cache import EdgeCache
from shared.settings import ControlPlaneSettings

# A pool for one statement, or a connection for a transaction.
Queryable: TypeAlias = "asyncpg.Pool[Any] | asyncpg.Connection[Any]"


@dataclass(frozen=True, slots=True)
class ServiceContext:
    db: asyncpg.Pool[Any]
    cache: EdgeCache
    settings: ControlPlaneSettings

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection[Any]]:
        async with self.db.acquire() as conn:
            # The pool hands out a proxy that forwards every Connection method.
            yield cast("asyncpg.Connection[Any]", conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection[Any]]:
        async with self.connection() as conn, conn.transaction():
            yield conn

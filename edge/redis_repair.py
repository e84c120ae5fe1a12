"""Whether Redis's rows may be read again after contact was (re)made (docs/freshness.md).

A write that could not update Redis marks it for repair in PostgreSQL; the control plane's cache sync
clears the mark once it has re-applied the outbox. Until then this edge reads rows from PostgreSQL.
While PostgreSQL cannot be asked, Redis is the only store left, and its rows are read (a double fault:
no write can commit meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg

from edge.redis_link import RedisLink

log = logging.getLogger(__name__)

CHECK_INTERVAL = 0.2  # seconds between checks (one single-row query)
QUERY_TIMEOUT = 2.0
PENDING = "SELECT pending_through FROM cache_repair"


class RedisRepairWatch:
    def __init__(self, db: asyncpg.Pool[Any], link: RedisLink) -> None:
        self.db = db
        self.link = link

    async def run(self) -> None:
        while True:
            if self.link.up:
                await self.check()
            await asyncio.sleep(CHECK_INTERVAL)

    async def check(self) -> None:
        contact = self.link.contacts
        try:
            async with asyncio.timeout(QUERY_TIMEOUT):
                pending = await self.db.fetchval(PENDING)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if not self.link.rows_current:
                log.warning("PostgreSQL unreachable: reading rows from Redis, the only store left: %r", exc)
            pending = 0
        if contact == self.link.contacts and self.link.up:
            self.link.rows_current = pending == 0

"""Whether Redis's rows may be read again after contact was (re)made (docs/freshness.md).

A write that could not update Redis marks it for repair in PostgreSQL; the control plane's cache sync
clears the mark once it has re-applied the outbox. Until then this edge reads rows from PostgreSQL.
While PostgreSQL cannot be asked, Redis is the only store left, and its rows are read (a double fault:
no write can commit meanwhile).

The filter of existing codes asks more, since it answers "no such code" without PostgreSQL: after each
contact it counts only once, besides no repair pending, the cache sync's cursor in Redis has reached the
outbox's newest event as PostgreSQL saw it before (a Redis restored from an older file brings back an older
filter and an older cursor: the re-application puts the codes created since back into the filter).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions

from edge.code_filter import CodeFilter
from edge.redis_link import RedisLink

log = logging.getLogger(__name__)

CHECK_INTERVAL = 0.2  # seconds between checks (one single-row query)
QUERY_TIMEOUT = 2.0
PENDING = "SELECT pending_through FROM cache_repair"
# The newest event the cache sync re-applies (control_plane/services/cache_sync.py skips threshold events).
LATEST = "SELECT COALESCE(max(seq), 0) FROM events WHERE type <> 'qr.scan_threshold'"
FAILURES = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, redis.exceptions.RedisError)


class RedisRepairWatch:
    def __init__(self, db: asyncpg.Pool[Any], link: RedisLink, redis: aioredis.Redis | None = None,
                 cursor_key: str = "", code_filter: CodeFilter | None = None) -> None:
        self.db = db
        self.link = link
        self.redis = redis
        self.cursor_key = cursor_key  # the cache sync's (shared.keys.cache_sync_cursor)
        self.code_filter = code_filter
        self._stop = asyncio.Event()

    async def run(self) -> None:
        """Until `stop`: a task cancelled while redis-py reads a reply does not always stop (it may swallow the
        cancellation), and one cancelled inside asyncpg's query can leave the pool's connection busy."""
        while not self._stop.is_set():
            if self.link.up:
                await self.check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), CHECK_INTERVAL)

    def stop(self) -> None:
        self._stop.set()

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
            if pending == 0 and self.code_filter is not None and self.code_filter.verified_contact != contact:
                await self._check_filter(contact)

    async def _check_filter(self, contact: int) -> None:
        assert self.redis is not None and self.code_filter is not None
        try:
            async with asyncio.timeout(QUERY_TIMEOUT):
                cursor = await self.redis.get(self.cursor_key)
                if cursor is None:  # no cache sync has run on this Redis yet: there is no filter to check
                    return
                latest = await self.db.fetchval(LATEST)  # what the cursor covered when read is at least this
        except FAILURES:
            return
        if int(cursor) >= latest and contact == self.link.contacts and self.link.up:
            self.code_filter.verified(contact)

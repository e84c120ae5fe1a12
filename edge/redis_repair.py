"""Whether Redis's rows may be read again after contact was (re)made (docs/freshness.md).

A write that could not update Redis marks it for repair in PostgreSQL; the control plane's cache sync
clears the mark once it has re-applied the outbox. A Redis can also come back older without any write
having failed (restored from an older file, a failover to a replica that missed the last writes, the last
second of an `appendfsync everysec`): so after each contact its rows, and the filter of existing codes,
count only once, besides no repair pending, the cache sync's cursor in that Redis has reached the
outbox's newest event as PostgreSQL saw it after the contact. A write committed since then that reached
this Redis is in it; one that did not has marked it for repair. Until then this edge reads rows from
PostgreSQL. The check is made every CHECK_INTERVAL until it passes once per contact, never per scan.

While PostgreSQL cannot be asked, Redis is the only store left, and its rows are read (a double fault:
no write can commit meanwhile).
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
from shared.outbox import OutboxPosition

log = logging.getLogger(__name__)

CHECK_INTERVAL = 0.2  # seconds between checks (one single-row query)
QUERY_TIMEOUT = 2.0
PENDING = "SELECT pending_through FROM cache_repair"
# The newest event the cache sync re-applies, in its order (control_plane/services/cache_sync.py skips
# threshold events).
NEWEST = "SELECT xid, seq FROM events WHERE type <> 'qr.scan_threshold' ORDER BY xid DESC, seq DESC LIMIT 1"
DB_FAILURES = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
FAILURES = (*DB_FAILURES, redis.exceptions.RedisError)


class RedisRepairWatch:
    def __init__(self, db: asyncpg.Pool[Any], link: RedisLink, redis: aioredis.Redis,
                 cursor_key: str, code_filter: CodeFilter | None = None) -> None:
        self.db = db
        self.link = link
        self.redis = redis
        self.cursor_key = cursor_key  # the cache sync's (shared.keys.cache_sync_cursor)
        self.code_filter = code_filter
        self._newest: tuple[int, OutboxPosition] = (-1, OutboxPosition(0, 0))  # (contact, newest event then)
        self._caught_up = -1  # the last contact whose Redis the cache sync had caught up with
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
        except DB_FAILURES as exc:
            if not self.link.rows_current:
                log.warning("PostgreSQL unreachable: reading rows from Redis, the only store left: %r", exc)
            if contact == self.link.contacts and self.link.up:
                self.link.rows_current = True
            return
        current = pending == 0 and await self._synced(contact)
        if contact == self.link.contacts and self.link.up:
            self.link.rows_current = current
            if current and self.code_filter is not None:
                self.code_filter.verified(contact)

    async def _synced(self, contact: int) -> bool:
        """Whether this Redis holds every event committed before `contact` was made, re-applied."""
        if self._caught_up == contact:
            return True
        try:
            async with asyncio.timeout(QUERY_TIMEOUT):
                if self._newest[0] != contact:  # read after the contact was made, once
                    newest = await self.db.fetchrow(NEWEST)
                    self._newest = (contact, OutboxPosition(0, 0) if newest is None else OutboxPosition(*newest))
                raw = await self.redis.get(self.cursor_key)
        except FAILURES:
            return False
        if raw is None or OutboxPosition.decode(raw) < self._newest[1]:  # None: no cache sync ran on this Redis
            return False
        self._caught_up = contact
        return True

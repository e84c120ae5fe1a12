"""Scan recording with group commit: every request in flight shares one pipelined XADD batch.

While Redis is unreachable — or while the journal still holds scans from an outage, so that the stream
keeps their order — batches go to the scan journal instead, and are replayed once Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
import redis.exceptions

from edge.journal import ScanJournal
from edge.redis_link import RedisLink
from shared.keys import SCAN_FIELD

log = logging.getLogger(__name__)

REDIS_FAILURES = (OSError, TimeoutError, redis.exceptions.RedisError)


class ScanRecorder:
    """`record` returns once Redis has acknowledged the batch holding the event, or it is on disk."""

    def __init__(self, redis: aioredis.Redis, stream: str, journal: ScanJournal, link: RedisLink,
                 on_batch: Callable[[int], None] = lambda size: None) -> None:
        self.redis = redis
        self.stream = stream
        self.journal = journal
        self.link = link
        self.on_batch = on_batch
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._replayer: asyncio.Task[None] | None = None
        link.on_up(self.replay_soon)

    async def record(self, event: bytes) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((event, done))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                self.on_batch(len(batch))
                try:
                    await self._store([event for event, _ in batch])
                except Exception as exc:
                    log.error("cannot record %d scans in Redis nor in the journal: %r", len(batch), exc)
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._flusher = None

    async def _store(self, events: list[bytes]) -> None:
        if self.link.up and not self.journal.depth:
            try:
                return await self._xadd(events)
            except REDIS_FAILURES as exc:
                self.link.mark_down(exc)
        await self.journal.append(events)
        self.replay_soon()

    async def _xadd(self, events: list[bytes]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.xadd(self.stream, {SCAN_FIELD: event})
            await pipe.execute()

    def replay_soon(self) -> None:
        if self._replayer is None and self.link.up and self.journal.depth:
            self._replayer = asyncio.create_task(self._replay())

    async def _replay(self) -> None:
        try:
            await self.journal.replay(self._xadd)
            log.warning("journal replayed into the scan stream")
        except REDIS_FAILURES as exc:
            self.link.mark_down(exc)
        finally:
            self._replayer = None

    async def drain(self, timeout: float = 5.0) -> None:
        """Graceful shutdown: finish the batch in flight; an unfinished replay stays in the journal."""
        flusher = self._flusher
        if flusher is not None:
            await asyncio.wait([flusher], timeout=timeout)
        if self._replayer is not None:
            await asyncio.wait([self._replayer], timeout=timeout)
            self._replayer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replayer

"""Scan recording with group commit: every request in flight shares one pipelined XADD batch."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from shared.keys import SCAN_FIELD

log = logging.getLogger(__name__)


class ScanRecorder:
    """`record` returns once Redis has acknowledged the batch holding the event."""

    def __init__(self, redis: aioredis.Redis, stream: str) -> None:
        self.redis = redis
        self.stream = stream
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

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
                try:
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for event, _ in batch:
                            pipe.xadd(self.stream, {SCAN_FIELD: event})
                        await pipe.execute()
                except Exception as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._flusher = None

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait for the batch in flight (graceful shutdown)."""
        flusher = self._flusher
        if flusher is not None:
            await asyncio.wait([flusher], timeout=timeout)

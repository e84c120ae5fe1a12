"""Scan recording with group commit: every request in flight shares one XADD batch (one EVAL).

While Redis is unreachable — or while the journal still holds scans from an outage, so that the stream
keeps their order — batches go to the scan journal instead, and are replayed once Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from functools import partial

import redis.asyncio as aioredis
import redis.exceptions

from edge.journal import ScanJournal
from edge.redis_link import RedisLink
from edge.scan_stream import ScanStream
from shared.keys import SCAN_FIELD

log = logging.getLogger(__name__)

REDIS_FAILURES = (OSError, TimeoutError, redis.exceptions.RedisError)
CLOCK_SLACK_MS = 5_000  # the stream's ids come from Redis's clock, `sent_at` from ours
SEARCH_PAGES = 200  # × 1000 entries: past that, replay anyway (ingest deduplicates on scan_id)


async def _already_in_stream(redis: aioredis.Redis, stream: str, events: set[bytes], since: float) -> set[bytes]:
    """Which of `events` the stream already holds, looking at the entries added since `since`."""
    found: set[bytes] = set()
    start = f"{int(since * 1000) - CLOCK_SLACK_MS}-0"
    for _ in range(SEARCH_PAGES):
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(  # type: ignore[assignment]
            stream, min=start, max="+", count=1000)
        found.update(fields[SCAN_FIELD] for _, fields in entries if fields[SCAN_FIELD] in events)
        if len(entries) < 1000 or len(found) == len(events):
            break
        start = "(" + entries[-1][0].decode()
    return found


Stored = Callable[[BaseException | None], None]


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def _tell(batch: list[tuple[bytes, Stored]], error: BaseException | None) -> None:
    for _, stored in batch:
        try:
            stored(error)
        except Exception:  # one waiter's bug must not keep the others of the batch waiting
            log.exception("scan acknowledgement callback failed")


class ScanRecorder:
    """`record` returns once Redis has acknowledged the batch holding the event, or it is on disk."""

    def __init__(self, redis: aioredis.Redis, stream: str, journal: ScanJournal, link: RedisLink,
                 writer: ScanStream, on_batch: Callable[[int], None] = lambda size: None) -> None:
        self.redis = redis
        self.writer = writer  # one EVAL per batch (edge/scan_stream.py)
        self.stream = stream
        self.journal = journal
        self.link = link
        self.on_batch = on_batch
        self._pending: list[tuple[bytes, Stored]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._replayer: asyncio.Task[None] | None = None
        self._unacknowledged: set[bytes] = set()  # journaled after a failed XADD batch
        self._unacknowledged_since = math.inf  # when the first of those batches was sent (unix seconds)
        self._delivered: set[bytes] = set()  # of those, the ones found in the stream: not replayed
        link.on_up(self.replay_soon)

    async def record(self, event: bytes) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.submit(event, partial(_settle, done))
        await done

    def submit(self, event: bytes, stored: Stored) -> None:
        """Queue `event` for the next batch; `stored(None)` is called once it is stored, `stored(error)` if it
        could not be (the protocol server's hit path: no future, no task per scan)."""
        self._pending.append((event, stored))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                self.on_batch(len(batch))
                try:
                    await self._store([event for event, _ in batch])
                except Exception as exc:
                    log.error("cannot record %d scans in Redis nor in the journal: %r", len(batch), exc)
                    _tell(batch, exc)
                    continue
                _tell(batch, None)
        finally:
            self._flusher = None

    async def _store(self, events: list[bytes]) -> None:
        if self.link.up and not self.journal.depth:
            sent_at = time.time()
            try:
                return await self._xadd(events)
            except REDIS_FAILURES as exc:
                self.link.mark_down(exc)
                # The batch may have reached the stream with only the reply lost: check before replaying.
                self._unacknowledged.update(events)
                self._unacknowledged_since = min(self._unacknowledged_since, sent_at)
        await self.journal.append(events)
        self.replay_soon()

    async def _xadd(self, events: list[bytes]) -> None:
        if events:
            await self.writer.xadd_all(self.stream, SCAN_FIELD, events)

    def replay_soon(self) -> None:
        if self._replayer is None and self.link.up and self.journal.depth:
            self._replayer = asyncio.create_task(self._replay())

    async def _replay(self) -> None:
        try:
            if self._unacknowledged:
                self._delivered |= await _already_in_stream(self.redis, self.stream, self._unacknowledged,
                                                            self._unacknowledged_since)
                self._unacknowledged, self._unacknowledged_since = set(), math.inf
            await self.journal.replay(self._xadd_undelivered)
            self._delivered = set()
            log.warning("journal replayed into the scan stream")
        except REDIS_FAILURES as exc:
            self.link.mark_down(exc)
        finally:
            self._replayer = None

    async def _xadd_undelivered(self, events: list[bytes]) -> None:
        await self._xadd([event for event in events if event not in self._delivered])

    async def drain(self, timeout: float = 5.0) -> None:
        """Graceful shutdown: finish the batch in flight; an unfinished replay stays in the journal."""
        flusher = self._flusher
        if flusher is not None:
            await asyncio.wait([flusher], timeout=timeout)
        replayer = self._replayer
        if replayer is not None:
            await asyncio.wait([replayer], timeout=timeout)
            replayer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replayer

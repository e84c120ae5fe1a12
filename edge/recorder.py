"""Scan recording with group commit: every request in flight shares one XADD batch (one EVAL).

While Redis is unreachable — or while the journal still holds scans from an outage, so that the stream
keeps their order — batches go to the scan journal instead, and are replayed once Redis is back.

Both are bounded (docs/edge.md, "Scan journal and stream caps"). The stream takes a batch only while it
holds fewer than `stream_limit` entries (checked in the same script as the XADD, so no trim ever drops an
unconsumed scan) and while Redis is below `memory_share` of its `maxmemory`; past either, or past the
journal's limit, a batch is shed: its requests answer 503 and `scanroute_edge_shed_total{reason}` counts
them. A replay waits for room instead: its scans were answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from edge.journal import JournalFull, ScanJournal
from edge.redis_link import RedisLink
from edge.scan_stream import ScanStream
from shared.keys import SCAN_FIELD
from shared.settings import EDGE_FLUSH_S

log = logging.getLogger(__name__)

REDIS_FAILURES = (OSError, TimeoutError, redis.exceptions.RedisError)
STREAM_FULL_PAUSE = 0.5  # seconds a replay waits for the ingest workers to make room in the stream
CLOCK_SLACK_MS = 5_000  # the stream's ids come from Redis's clock, `sent_at` from ours
MAX_IN_FLIGHT = 4  # batches sent and not yet acknowledged (BENCHMARKS.md, 2026-11-30 "edge-speed")
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


class StreamFull(Exception):
    """The scan stream holds its limit of entries (the ingest workers are behind: PostgreSQL down?), or Redis
    is close to its `maxmemory`; `reason` is the `scanroute_edge_shed_total` label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason



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


SHED_REASONS = ("journal_full", "disk_full", "journal_error", "stream_full", "redis_memory")
MEMORY_CHECK_INTERVAL = 1.0  # seconds between two looks at Redis's memory (INFO memory)


class ScanRecorder:
    """`record` returns once Redis has acknowledged the batch holding the event, or it is on disk."""

    def __init__(self, redis: aioredis.Redis, stream: str, journal: ScanJournal, link: RedisLink,
                 writer: ScanStream, on_batch: Callable[[int], None] = lambda size: None,
                 stream_limit: int = 0, memory_share: float = 0.0) -> None:
        self.redis = redis
        self.writer = writer  # one EVAL per batch (edge/scan_stream.py)
        self.stream = stream
        self.journal = journal
        self.link = link
        self.on_batch = on_batch
        self.stream_limit = stream_limit  # entries; 0: unbounded
        self.memory_share = memory_share  # of Redis's maxmemory, past which scans are shed (0: never)
        self.memory_full = False  # as of the last look (watch_memory)
        self._stop_watching = asyncio.Event()
        self.shed: dict[str, int] = dict.fromkeys(SHED_REASONS, 0)  # scans refused, by reason
        self.shedding = False  # the last batch was shed (logged once per episode; /readyz says so)
        self._pending: list[tuple[bytes, Stored]] = []
        self._scheduled = False  # a `_send` is due in this loop turn
        self._in_flight = 0  # batches sent by `_send`, not yet acknowledged
        self._failed: deque[list[tuple[bytes, Stored]]] = deque()  # of those, failed: for the journal
        self._loop = asyncio.get_running_loop()
        self._flusher: asyncio.Task[None] | None = None
        self._replayer: asyncio.Task[None] | None = None
        self._unacknowledged: set[bytes] = set()  # journaled after a failed XADD batch
        self._unacknowledged_since = math.inf  # when the first of those batches was sent (unix seconds)
        # Of those, the ones found in the stream, and pieces a replay sent before it stopped: not replayed.
        self._delivered: set[bytes] = set()
        link.on_up(self.replay_soon)

    async def record(self, event: bytes) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.submit(event, partial(_settle, done))
        await done

    def submit(self, event: bytes, stored: Stored) -> None:
        """Queue `event` for the next batch; `stored(None)` is called once it is stored, `stored(error)` if it
        could not be (the protocol server's hit path: no future, no task per scan)."""
        self._pending.append((event, stored))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._send)  # after this loop turn's reads: they share the batch

    def _send(self) -> None:
        """The usual case, without a task: the batch leaves at once on the recorder's open connection, even with
        batches before it still in flight (Redis runs them in order), and its acknowledgement answers its
        requests in the loop turn it arrives in. Anything else — no connection yet, Redis down, a journal to
        replay first, a failed batch to journal — goes through the `_flush` task, in order."""
        self._scheduled = False
        if not self._pending or self._in_flight >= MAX_IN_FLIGHT:
            return  # the next acknowledgement sends it
        if self._flusher is not None or not self.link.up or self.journal.depth or self.memory_full:
            if self._flusher is None:
                self._flusher = asyncio.create_task(self._flush())
            return
        batch, self._pending = self._pending, []
        if not self.writer.send_nowait(self.stream, self.stream_limit, SCAN_FIELD, [e for e, _ in batch],
                                       partial(self._acknowledged, batch, time.time())):
            self._pending = batch + self._pending  # no open connection: `_flush` connects
            self._flusher = asyncio.create_task(self._flush())
            return
        self.on_batch(len(batch))
        self._in_flight += 1

    def _acknowledged(self, batch: list[tuple[bytes, Stored]], sent_at: float, reply: int | BaseException) -> None:
        self._in_flight -= 1
        if isinstance(reply, BaseException):
            # As `_store`: the batch may have reached the stream with only the reply lost, so it is journaled
            # (and looked for in the stream before the replay); the batches behind it fail the same way.
            self.link.mark_down(reply)
            self._unacknowledged.update(event for event, _ in batch)
            self._unacknowledged_since = min(self._unacknowledged_since, sent_at)
            self._failed.append(batch)
            if self._flusher is None:
                self._flusher = asyncio.create_task(self._flush())
            return
        if reply < 0:
            self._shed(batch, StreamFull("stream_full", f"the scan stream holds {self.stream_limit} entries or"
                                         " more (SCAN_STREAM_MAX_ENTRIES)"))
        else:
            if self.shedding:
                log.warning("recording scans again")
                self.shedding = False
            _tell(batch, None)
        if self._pending and not self._scheduled:
            self._send()

    def _shed(self, batch: list[tuple[bytes, Stored]], exc: JournalFull | StreamFull) -> None:
        if not self.shedding:
            log.error("shedding scans (answered 503) until there is room: %s", exc)
        self.shedding = True
        self.shed[exc.reason] += len(batch)
        _tell(batch, exc)

    async def _flush(self) -> None:
        try:
            while self._failed or self._pending:
                if self._failed:  # sent, unacknowledged: to the journal, in the order they were sent
                    batch = self._failed.popleft()
                    if await self._written(batch, self.journal.append):
                        self.replay_soon()
                        _tell(batch, None)
                    continue
                if self._in_flight:  # batches on their way keep their place before this one
                    await asyncio.sleep(0.001)
                    continue
                batch, self._pending = self._pending, []
                self.on_batch(len(batch))
                if await self._written(batch, self._store):
                    if self.shedding:
                        log.warning("recording scans again")
                        self.shedding = False
                    _tell(batch, None)
        finally:
            self._flusher = None

    async def _written(self, batch: list[tuple[bytes, Stored]],
                       write: Callable[[list[bytes]], Awaitable[object]]) -> bool:
        """Writes the batch's events; if that fails, its requests are answered here (503 when the journal or the
        stream is full, an error otherwise) and False is returned."""
        try:
            await write([event for event, _ in batch])
        except (JournalFull, StreamFull) as exc:
            self._shed(batch, exc)
        except Exception as exc:
            log.error("cannot record %d scans in Redis nor in the journal: %r", len(batch), exc)
            _tell(batch, exc)
        else:
            return True
        return False

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
        if not events:
            return
        if self.memory_full:
            raise StreamFull("redis_memory", f"Redis uses {self.memory_share:.0%} of its maxmemory or more"
                             " (EDGE_REDIS_MEMORY_PERCENT)")
        if await self.writer.xadd_all(self.stream, self.stream_limit, SCAN_FIELD, events) < 0:
            raise StreamFull("stream_full", f"the scan stream holds {self.stream_limit} entries or more"
                             " (SCAN_STREAM_MAX_ENTRIES)")

    async def watch_memory(self) -> None:
        """Look at Redis's memory every second: shed before Redis refuses writes at its `maxmemory` (or
        evicts keys), rather than after. Without a `maxmemory`, only the stream's own limit applies.

        Runs until `stop_watching`: a task cancelled while redis-py reads a reply does not always stop.
        """
        while not self._stop_watching.is_set():
            if self.memory_share and self.link.up:
                try:
                    info: dict[str, Any] = await self.redis.info("memory")
                except REDIS_FAILURES:
                    pass  # the next batch finds out, and marks Redis down
                else:
                    limit = int(info.get("maxmemory", 0))
                    full = limit > 0 and int(info["used_memory"]) >= limit * self.memory_share
                    if full != self.memory_full:
                        log.warning("Redis uses %d of its %d bytes of maxmemory: %s", int(info["used_memory"]),
                                    limit, "shedding scans" if full else "recording scans in it again")
                    self.memory_full = full
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_watching.wait(), MEMORY_CHECK_INTERVAL)

    def stop_watching(self) -> None:
        self._stop_watching.set()

    def replay_soon(self) -> None:
        if self._replayer is None and self.link.up and self.journal.depth:
            self._replayer = asyncio.create_task(self._replay())

    async def _replay(self) -> None:
        try:
            if self._unacknowledged:
                self._delivered |= await _already_in_stream(self.redis, self.stream, self._unacknowledged,
                                                            self._unacknowledged_since)
                self._unacknowledged, self._unacknowledged_since = set(), math.inf
            while True:
                try:
                    await self.journal.replay(self._xadd_undelivered)
                    break
                except StreamFull:  # answered scans are never shed: they wait in the journal for room
                    await asyncio.sleep(STREAM_FULL_PAUSE)
                    if not self.link.up:
                        return
            self._delivered = set()
            log.warning("journal replayed into the scan stream")
        except REDIS_FAILURES as exc:
            self.link.mark_down(exc)
        finally:
            self._replayer = None

    async def _xadd_undelivered(self, events: list[bytes]) -> None:
        """One chunk of the journal, in pieces that fit a stream at most half full; the pieces sent before
        one fails are remembered, so the retry of the chunk does not send them twice."""
        fresh = [event for event in events if event not in self._delivered]
        step = max(1, self.stream_limit // 2) if self.stream_limit else max(1, len(fresh))
        for start in range(0, len(fresh), step):
            try:
                await self._xadd(fresh[start:start + step])
            except BaseException:
                self._delivered.update(fresh[:start])
                raise
        self._delivered.difference_update(events)

    async def drain(self, timeout: float = EDGE_FLUSH_S) -> None:
        """Graceful shutdown: finish the batches in flight; an unfinished replay stays in the journal."""
        deadline = time.monotonic() + timeout
        while (self._in_flight or self._pending or self._scheduled) and self._flusher is None \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.005)  # acknowledged (or failed) within the stream's timeout
        flusher = self._flusher
        if flusher is not None:
            await asyncio.wait([flusher], timeout=max(0.0, deadline - time.monotonic()))
        replayer = self._replayer
        if replayer is not None:
            await asyncio.wait([replayer], timeout=timeout)
            replayer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replayer

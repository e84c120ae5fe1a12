"""The scan journal: where scans go while Redis is unreachable, until they are replayed into the stream.

One append-only file per edge process (`journal-<pid>-<random>.ndjson`, one encoded event per line),
held under an exclusive `flock` for the life of the process. A lock that can be taken therefore belongs to
a dead process: at start-up its complete lines are copied into the new process's journal, which replays
them. Appends are batched (the recorder's group commit) and fsynced once per batch, off the event loop.

Replay is at least once: a crash after a replayed chunk reached Redis but before the file was truncated
sends that chunk again after the restart. The ingest worker deduplicates on `scan_id`.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger(__name__)

REPLAY_CHUNK_BYTES = 1 << 20
PATTERN = "journal-*.ndjson"


def _complete_lines(data: bytes) -> list[bytes]:
    """Whole lines only: a crash mid-write leaves a torn last line, which never reached a visitor."""
    return data[: data.rfind(b"\n") + 1].splitlines()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fdatasync(fd)


class ScanJournal:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / f"journal-{os.getpid()}-{secrets.token_hex(4)}.ndjson"
        self.depth = 0  # events appended and not yet replayed
        self._size = 0  # bytes durably written
        self._replayed = 0  # bytes whose events reached Redis
        self._fd = -1
        self._lock = asyncio.Lock()  # appends and the final truncate never interleave

    def open(self) -> None:
        """Create this process's journal and take over the journals of dead processes."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for orphan in sorted(self.folder.glob(PATTERN)):
            if orphan != self.path:
                self._adopt(orphan)

    def _adopt(self, orphan: Path) -> None:
        try:
            fd = os.open(orphan, os.O_RDWR)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not orphan.exists() or os.stat(orphan).st_ino != os.fstat(fd).st_ino:
                return  # another process adopted and removed it first
            with open(fd, "rb", closefd=False) as file:
                lines = _complete_lines(file.read())
            if lines:
                data = b"".join(line + b"\n" for line in lines)
                _write_all(self._fd, data)
                self._size += len(data)
                self.depth += len(lines)
                log.warning("took over %d journaled scans of a stopped edge process (%s)", len(lines), orphan.name)
            orphan.unlink()
        except BlockingIOError:
            return  # its process is alive
        finally:
            os.close(fd)

    async def append(self, events: list[bytes]) -> None:
        """Returns once the events are on disk."""
        data = b"".join(event + b"\n" for event in events)
        async with self._lock:
            await asyncio.to_thread(_write_all, self._fd, data)
            self._size += len(data)
            self.depth += len(events)

    async def replay(self, send: Callable[[list[bytes]], Awaitable[None]]) -> None:
        """Send every journaled event in order (`send` raises if Redis fails), then empty the journal."""
        while True:
            data = await asyncio.to_thread(self._read, self._replayed, self._size)
            events = _complete_lines(data)
            if events:
                await send(events)
                self._replayed += sum(len(event) + 1 for event in events)
                self.depth -= len(events)
                continue
            async with self._lock:
                if self._replayed == self._size:  # nothing was appended meanwhile
                    os.ftruncate(self._fd, 0)
                    self._size = self._replayed = self.depth = 0
                    return

    def _read(self, start: int, end: int) -> bytes:
        data = os.pread(self._fd, min(end - start, REPLAY_CHUNK_BYTES), start)
        if b"\n" not in data:  # one event longer than a chunk
            data = os.pread(self._fd, end - start, start)
        return data

    def close(self) -> None:
        """Release the journal; a non-empty one is left for the next edge process to replay."""
        if self._fd < 0:
            return
        if self.depth == 0:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = -1

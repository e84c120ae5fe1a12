"""The scan journal: where scans go while Redis is unreachable, until they are replayed into the stream.

One append-only file per edge process (`journal-<pid>-<random>.ndjson`, one encoded event per line),
held under an exclusive `flock` for the life of the process. A lock that can be taken therefore belongs to
a dead process: at start-up its complete lines are copied into the new process's journal, which replays
them. Appends are batched (the recorder's group commit) and fsynced once per batch, off the event loop.

The journal is bounded (docs/edge.md, "Scan journal and stream caps"): an append that would take it past
`limit` bytes, or leave less than `min_free` bytes free on its file system, is refused with `JournalFull`,
and so is one the file system refuses (disk full, file-size limit). A refused append leaves the file as it
was, so every scan acknowledged before stays replayable.

Replay is at least once: a crash after a replayed chunk reached Redis but before the file was truncated
sends that chunk again after the restart. The ingest worker deduplicates on `scan_id`.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger(__name__)

REPLAY_CHUNK_BYTES = 1 << 20
PATTERN = "journal-*.ndjson"
NO_SPACE = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


class JournalFull(Exception):
    """The journal cannot take a batch; `reason` is the `scanroute_edge_shed_total` label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _complete_lines(data: bytes) -> list[bytes]:
    """Whole lines only: a crash mid-write leaves a torn last line, which never reached a visitor."""
    return data[: data.rfind(b"\n") + 1].splitlines()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fdatasync(fd)


def _new_path(folder: Path) -> Path:
    return folder / f"journal-{os.getpid()}-{secrets.token_hex(4)}.ndjson"


class ScanJournal:
    def __init__(self, folder: Path, limit: int | None = None, min_free: int = 0) -> None:
        self.folder = folder
        self.limit = limit  # bytes this process's journal may hold (None: unbounded)
        self.min_free = min_free  # bytes to leave free on the journal's file system
        self.path = _new_path(folder)
        self.depth = 0  # events appended and not yet replayed
        self._size = 0  # bytes durably written
        self._replayed = 0  # bytes whose events reached Redis
        self._fd = -1
        self._broken: str | None = None  # a failed write could not be undone: refuse every append
        self._lock = asyncio.Lock()  # appends and the final truncate never interleave

    @property
    def size(self) -> int:
        """Bytes the journal's file holds (what `limit` bounds)."""
        return self._size

    def open(self) -> None:
        """Create this process's journal and take over the journals of dead processes."""
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            # Between the open and the lock, another process starting up may take the new file for a dead
            # process's journal, find it empty and remove it: appends would then go to a file nobody can
            # find after a crash. So wait for the lock (such a process holds it only while it looks), and
            # keep the file only if it is still the one at its name.
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(self.path, fd):
                break
            os.close(fd)
            self.path = _new_path(self.folder)
        self._fd = fd
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
                try:  # acknowledged scans: no cap applies, but the disk may be full
                    self._write(data)
                except OSError as exc:
                    log.error("cannot take over %s (kept for a later start): %r", orphan.name, exc)
                    return
                self._size += len(data)
                self.depth += len(lines)
                log.warning("took over %d journaled scans of a stopped edge process (%s)", len(lines), orphan.name)
            orphan.unlink()
        except BlockingIOError:
            return  # its process is alive
        finally:
            os.close(fd)

    async def append(self, events: list[bytes]) -> None:
        """Returns once the events are on disk; raises `JournalFull` (leaving the file as it was) if it is
        full."""
        data = b"".join(event + b"\n" for event in events)
        async with self._lock:
            if self._broken is not None:
                raise JournalFull("journal_error", self._broken)
            if self.limit is not None and self._size + len(data) > self.limit:
                raise JournalFull("journal_full", f"{self._size + len(data)} bytes would pass the journal's"
                                  f" limit of {self.limit}")
            await asyncio.to_thread(self._append, data)
            self._size += len(data)
            self.depth += len(events)

    def _append(self, data: bytes) -> None:
        if self.min_free:
            stat = os.statvfs(self.folder)
            free = stat.f_bavail * stat.f_frsize
            if free - len(data) < self.min_free:
                raise JournalFull("disk_full", f"{free} bytes free, {self.min_free} kept free")
        try:
            self._write(data)
        except OSError as exc:
            if exc.errno in NO_SPACE:
                raise JournalFull("disk_full", repr(exc)) from exc
            raise JournalFull("journal_error", repr(exc)) from exc

    def _write(self, data: bytes) -> None:
        """Append and sync; on failure, cut the file back to what it held, so no torn line stays behind
        (the next append would be glued to it)."""
        try:
            _write_all(self._fd, data)
        except OSError:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError as exc:
                self._broken = f"a failed write could not be undone: {exc!r}"
                log.error("scan journal %s: %s; refusing further scans", self.path.name, self._broken)
            raise

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

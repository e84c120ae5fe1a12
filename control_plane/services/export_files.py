"""Where finished export files live: PostgreSQL (1 MiB chunks, the default) or a shared directory.

Either way every control-plane process can serve them, and a job's file is written and read in chunks,
so neither the worker nor the API ever holds a whole file in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg

CHUNK = 1 << 20  # bytes per stored chunk and per read


class FileSink:
    """Receives an export's bytes in order; `close()` makes the file complete."""

    def __init__(self, store: FileStore, job_id: str, attempt: int) -> None:
        self.store = store
        self.job_id = job_id
        self.attempt = attempt
        self.pending = bytearray()
        self.seq = 0
        self.size = 0

    async def write(self, data: bytes) -> None:
        self.pending += data
        self.size += len(data)
        while len(self.pending) >= CHUNK:
            await self._put(bytes(self.pending[:CHUNK]))
            del self.pending[:CHUNK]

    async def _put(self, data: bytes) -> None:
        if self.store.directory is None:
            await self.store.db.execute(
                "INSERT INTO job_file_chunks (job_id, attempt, seq, data) VALUES ($1, $2, $3, $4)",
                self.job_id, self.attempt, self.seq, data)
        else:
            path = self.store.partial_path(self.job_id, self.attempt)
            await asyncio.to_thread(_append, path, data)
        self.seq += 1

    async def close(self) -> int:
        if self.pending:
            await self._put(bytes(self.pending))
            self.pending.clear()
        if self.store.directory is not None:
            partial = self.store.partial_path(self.job_id, self.attempt)
            if not partial.exists():
                partial.touch()
            partial.replace(self.store.path(self.job_id, self.attempt))
        return self.size


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(data)


class FileStore:
    def __init__(self, db: asyncpg.Pool[Any], directory: Path | None) -> None:
        self.db = db
        self.directory = directory

    def path(self, job_id: str, attempt: int) -> Path:
        """Named by attempt too: a stalled attempt finishing late can never replace the file of the one that won."""
        assert self.directory is not None
        return self.directory / f"{job_id}.{attempt}.export"

    def partial_path(self, job_id: str, attempt: int) -> Path:
        assert self.directory is not None
        return self.directory / f"{job_id}.{attempt}.partial"

    async def sink(self, job_id: str, attempt: int) -> FileSink:
        """A fresh file for this attempt. Only this attempt's is dropped: a stalled attempt may start writing
        after a later one finished; what earlier attempts left goes when the job ends (`keep_only`, `delete`)."""
        await self.delete(job_id, attempt)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        return FileSink(self, job_id, attempt)

    async def keep_only(self, job_id: str, attempt: int) -> None:
        """After success: chunks of any other (taken-over) attempt go."""
        if self.directory is None:
            await self.db.execute("DELETE FROM job_file_chunks WHERE job_id = $1 AND attempt <> $2", job_id, attempt)
            return
        for path in self.directory.glob(f"{job_id}.*"):
            if path != self.path(job_id, attempt):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    async def read(self, job_id: str, attempt: int) -> AsyncIterator[bytes]:
        if self.directory is not None:
            with self.path(job_id, attempt).open("rb") as handle:
                while chunk := await asyncio.to_thread(handle.read, CHUNK):
                    yield chunk
            return
        seq = 0
        while True:
            chunk = await self.db.fetchval(
                "SELECT data FROM job_file_chunks WHERE job_id = $1 AND attempt = $2 AND seq = $3",
                job_id, attempt, seq)
            if chunk is None:
                return
            yield chunk
            seq += 1

    async def delete(self, job_id: str, attempt: int | None = None) -> None:
        """The files of one attempt, or of every attempt (`None`)."""
        if self.directory is None:
            await self.db.execute(
                "DELETE FROM job_file_chunks WHERE job_id = $1 AND ($2::int IS NULL OR attempt = $2)", job_id, attempt)
            return
        for path in self.directory.glob(f"{job_id}.{'*' if attempt is None else attempt}.*"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


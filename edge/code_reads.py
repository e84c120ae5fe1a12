"""Code rows missing from the local cache, read in batches: the misses in flight share one MGET, one
PostgreSQL query for what Redis lacks, and one pipelined write-back (group commit, as for scans).

Over a large catalogue most misses are for different codes, so single flight alone does not help; a
round trip per miss to Redis and then to PostgreSQL would cost more than the scan itself.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions

from edge.redis_link import RedisLink
from shared.edge_rows import RowStore, load_codes_by_slugs
from shared.keys import RedisKeys
from shared.rows import CodeRow

log = logging.getLogger(__name__)

REDIS_FAILURES = (OSError, TimeoutError, redis.exceptions.RedisError)
Wanted = tuple[str, str]  # (domain, slug)


def _decoded(raw: bytes | str | None) -> CodeRow | None:
    if raw is None:
        return None
    try:
        return CodeRow.decode(raw)
    except (ValueError, KeyError, TypeError) as exc:  # PostgreSQL is the truth: read it instead
        log.warning("unreadable cached code row: %r", exc)
        return None


def _answer(batch: list[tuple[Wanted, asyncio.Future[CodeRow | None]]], found: dict[Wanted, CodeRow]) -> None:
    for wanted, done in batch:
        if not done.done():
            done.set_result(found.get(wanted))


def _fail(batch: list[tuple[Wanted, asyncio.Future[CodeRow | None]]], exc: Exception) -> None:
    for _, done in batch:
        if not done.done():
            done.set_exception(exc)


class CodeReads:
    def __init__(self, redis: aioredis.Redis, db: asyncpg.Pool[Any], keys: RedisKeys, link: RedisLink) -> None:
        self.redis = redis
        self.db = db
        self.keys = keys
        self.link = link
        self.rows = RowStore(redis, keys)
        self._pending: list[tuple[Wanted, asyncio.Future[CodeRow | None]]] = []
        self._reader: asyncio.Task[None] | None = None

    async def read(self, domain: str, slug: str) -> CodeRow | None:
        done: asyncio.Future[CodeRow | None] = asyncio.get_running_loop().create_future()
        self._pending.append(((domain, slug), done))
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_batches())
        return await done

    async def _read_batches(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    found = await self._read([wanted for wanted, _ in batch])
                except asyncpg.PostgresError as exc:  # PostgreSQL rejected the query, perhaps for one key
                    if len(batch) == 1:
                        _fail(batch, exc)
                    else:
                        await self._read_one_by_one(batch)
                    continue
                except Exception as exc:
                    _fail(batch, exc)
                    continue
                _answer(batch, found)
        finally:
            self._reader = None

    async def _read_one_by_one(self, batch: list[tuple[Wanted, asyncio.Future[CodeRow | None]]]) -> None:
        """One bad key must not fail the scans it shared a batch with (it answers 503 alone)."""
        for item in batch:
            try:
                _answer([item], await self._read([item[0]]))
            except Exception as exc:
                _fail([item], exc)

    async def _read(self, wanted: list[Wanted]) -> dict[Wanted, CodeRow]:
        found = await self._from_redis(wanted)
        missing = [w for w in wanted if w not in found]
        if missing:
            from_db = await load_codes_by_slugs(self.db, missing)
            found.update(from_db)
            if from_db and self.link.up:
                await self._write_back(from_db)
        return found

    async def _from_redis(self, wanted: list[Wanted]) -> dict[Wanted, CodeRow]:
        if not self.link.rows_readable:
            return {}
        try:
            raws: list[bytes | str | None] = await self.redis.mget([self.keys.code(d, s) for d, s in wanted])
        except REDIS_FAILURES as exc:
            self.link.mark_down(exc)
            return {}
        return {w: row for w, raw in zip(wanted, raws, strict=True) if (row := _decoded(raw)) is not None}

    async def _write_back(self, rows: dict[Wanted, CodeRow]) -> None:
        try:
            await self.rows.store_codes([(domain, slug, row) for (domain, slug), row in rows.items()])
        except REDIS_FAILURES as exc:
            self.link.mark_down(exc)

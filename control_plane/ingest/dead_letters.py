"""Dead letters: scan-stream entries the ingest worker could not store, kept whole in PostgreSQL.

A poison entry (undecodable, or rejected by PostgreSQL) must not block the stream, and must not be lost
either: it lands here with the reason, and `scanroute dead-letters replay` puts it back on the stream once
the cause is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from shared.keys import SCAN_FIELD


@dataclass(frozen=True, slots=True)
class DeadLetter:
    stream_id: str
    payload: bytes
    error: str
    deliveries: int = 1


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    id: int
    stream_id: str
    payload: bytes
    error: str
    deliveries: int
    created_at: datetime
    replayed_at: datetime | None


INSERT = """
INSERT INTO scan_dead_letters (stream_id, payload, error, deliveries)
SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::int[])
"""


async def store(db: asyncpg.Pool[Any] | asyncpg.Connection[Any], letters: list[DeadLetter]) -> None:
    await db.execute(INSERT, [d.stream_id for d in letters], [d.payload for d in letters],
                     [d.error[:2000] for d in letters], [d.deliveries for d in letters])


async def waiting(db: asyncpg.Pool[Any] | asyncpg.Connection[Any], *, include_replayed: bool = False,
                  limit: int = 100) -> list[StoredDeadLetter]:
    rows = await db.fetch(
        "SELECT id, stream_id, payload, error, deliveries, created_at, replayed_at FROM scan_dead_letters"
        " WHERE $1 OR replayed_at IS NULL ORDER BY id LIMIT $2", include_replayed, limit)
    return [StoredDeadLetter(**dict(row)) for row in rows]


async def replay(db: asyncpg.Pool[Any] | asyncpg.Connection[Any], redis: aioredis.Redis, stream: str,
                 ids: list[int] | None = None) -> int:
    """Append the chosen (default: every waiting) dead letter to the scan stream again; returns how many.

    Marked replayed only after Redis took it; replaying twice is harmless, as ingest dedupes on scan_id.
    """
    rows = await db.fetch(
        "SELECT id, payload FROM scan_dead_letters WHERE replayed_at IS NULL AND ($1::bigint[] IS NULL"
        " OR id = ANY($1)) ORDER BY id", ids)
    for row in rows:
        await redis.xadd(stream, {SCAN_FIELD: row["payload"]})
        await db.execute("UPDATE scan_dead_letters SET replayed_at = now() WHERE id = $1", row["id"])
    return len(rows)

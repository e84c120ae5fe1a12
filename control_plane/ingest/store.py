"""Storing a batch of scan rows exactly once, with everything derived from them, in one transaction.

The common batch holds only new scans and is COPYed straight into `scans`, the fastest way in. A batch that
meets a scan stored before (a redelivery after a crash, a replayed journal or dead letter) fails on the
primary key; only then is it COPYed into a staging table and inserted with ON CONFLICT DO NOTHING, which
names the rows that are new. Either way, the hourly counts and sketches, `scan_count` and its threshold events grow
by the new rows only.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from control_plane.ingest.counts import add_scans
from control_plane.ingest.hours import Summary, add_hours, summarise
from control_plane.ingest.scan_row import COLUMNS, ScanRow

STAGING = "CREATE TEMP TABLE IF NOT EXISTS scans_staging (LIKE scans) ON COMMIT DELETE ROWS"
INSERT_NEW = f"""
INSERT INTO scans ({", ".join(COLUMNS)}) SELECT {", ".join(COLUMNS)} FROM scans_staging
ON CONFLICT DO NOTHING RETURNING scan_id::text
"""


async def store_rows(conn: asyncpg.Connection[Any], rows: list[ScanRow], summary: Summary | None = None
                     ) -> list[ScanRow]:
    """Stores the rows not stored before and what derives from them; returns those. Commits, or raises.

    `summary` is `summarise(rows)` worked out ahead (while PostgreSQL stored the previous batch); it is used
    when every row is new, which is the common case."""
    unique = list({row.scan_id: row for row in rows}.values())
    async with conn.transaction():
        new = await _insert_new(conn, unique)
        if summary is None or len(new) < len(rows):
            summary = summarise(new)
        await add_hours(conn, summary.hours)
        await add_scans(conn, summary.per_code())
    return new


async def _insert_new(conn: asyncpg.Connection[Any], rows: list[ScanRow]) -> list[ScanRow]:
    try:
        async with conn.transaction():  # a savepoint: a duplicate undoes this attempt only
            await conn.copy_records_to_table("scans", records=rows, columns=COLUMNS)
        return rows
    except asyncpg.UniqueViolationError:
        pass
    await conn.execute(STAGING)
    await conn.copy_records_to_table("scans_staging", records=rows, columns=COLUMNS)
    inserted = {uuid.UUID(row[0]) for row in await conn.fetch(INSERT_NEW)}
    return [row for row in rows if uuid.UUID(row.scan_id) in inserted]

"""Daily partitions of `scans`: created ahead of time, dropped after the retention period.

Creating or dropping a partition takes an ACCESS EXCLUSIVE lock on `scans`. Queued behind a long reader (a
scans_csv export reads `scans` for minutes), such a lock request would queue in turn every ingest COPY and
analytics query behind it. The hourly maintenance is never urgent (days are made a week ahead), so it waits
MAINTENANCE_LOCK_TIMEOUT at most, then gives way (asyncpg.LockNotAvailableError) and is tried again soon.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

DAYS_AHEAD = 7
# Ingest may wait this long behind maintenance that waits for a reader: well within docs/api.md §2.8's 2 s.
MAINTENANCE_LOCK_TIMEOUT = "500ms"
# Only one worker drops partitions at a time; the others skip that round.
_RETENTION_LOCK = 0x5CA9_0005


class ScanPartitions:
    def __init__(self, db: asyncpg.Pool[Any]) -> None:
        self.db = db
        self.known: set[date] = set()

    async def ensure(self, days: set[date], *, give_way: bool = False) -> None:
        """Creates the partitions of these days, a statement per run of consecutive missing days: a scan from an
        edge whose clock is years off creates its own day, not every day between it and the others. The scans
        that need them wait as long as it takes, unless `give_way` (see the module's docstring)."""
        for first, last in _runs(sorted(days - self.known)):
            async with self.db.acquire() as conn, conn.transaction():
                if give_way:
                    await _give_way(conn)
                await conn.execute("SELECT ensure_scan_partitions($1, $2)", first, last)
            self.known |= {first + timedelta(days=n) for n in range((last - first).days + 1)}

    async def ensure_ahead(self, today: date | None = None) -> None:
        """Yesterday to a week ahead, so that the first scan of a day never waits for DDL. Gives way to a long
        reader of `scans` (asyncpg.LockNotAvailableError)."""
        today = today or datetime.now(UTC).date()
        await self.ensure({today + timedelta(days=n) for n in range(-1, DAYS_AHEAD + 1)}, give_way=True)

    async def drop_expired(self, retention_days: int, today: date | None = None) -> int:
        """Drops the partitions of days entirely older than `retention_days`; 0 keeps everything. Gives way to a
        long reader of `scans` (asyncpg.LockNotAvailableError): nothing is dropped then."""
        if retention_days <= 0:
            return 0
        cutoff = (today or datetime.now(UTC).date()) - timedelta(days=retention_days)
        async with self.db.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _RETENTION_LOCK):
                return 0
            await _give_way(conn)
            dropped: int = await conn.fetchval("SELECT drop_scan_partitions_before($1)", cutoff)
        if dropped:
            log.info("dropped %d scan partitions older than %s (SCAN_RETENTION_DAYS=%d)", dropped, cutoff,
                     retention_days)
        self.known = {day for day in self.known if day >= cutoff}
        return dropped


async def _give_way(conn: asyncpg.pool.PoolConnectionProxy[Any]) -> None:
    await conn.execute(f"SET LOCAL lock_timeout = '{MAINTENANCE_LOCK_TIMEOUT}'")


def _runs(days: list[date]) -> list[tuple[date, date]]:
    """Sorted days as (first, last) of each run of consecutive days."""
    runs: list[tuple[date, date]] = []
    for day in days:
        if runs and day - runs[-1][1] == timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs

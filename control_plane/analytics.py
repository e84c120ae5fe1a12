"""Scan analytics for one code or one group: totals, top-N breakdowns and a zero-filled timeseries.

Bots never count. The three queries run at once on separate connections: each reads the same index range
of human scans, and two cores finish them sooner side by side.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from control_plane.http import timestamp

# dimension in the response → (column, key of each entry)
DIMENSIONS: dict[str, tuple[str, str]] = {
    "country": ("country", "country"),
    "device": ("device_type", "device_type"),
    "os": ("os", "os"),
    "browser": ("browser", "browser"),
    "scan_method": ("scan_method", "scan_method"),
    "scanner_app": ("scanner_app", "scanner_app"),
    "outcome": ("outcome", "outcome"),
}
BUCKETS = {"day": timedelta(days=1), "hour": timedelta(hours=1)}


@dataclass(frozen=True, slots=True)
class ScanFilter:
    """Human scans of one code (`column` = code_id) or group (`column` = group_id) of one org and mode."""

    column: str
    object_id: str
    org_id: str
    livemode: bool
    since: datetime
    until: datetime

    @property
    def where(self) -> str:
        assert self.column in ("code_id", "group_id")
        return (f"{self.column} = $1 AND livemode = $2 AND org_id = $3 AND NOT is_bot"
                " AND scanned_at >= $4 AND scanned_at < $5")

    @property
    def args(self) -> tuple[Any, ...]:
        return self.object_id, self.livemode, self.org_id, self.since, self.until


def _breakdown_sql(where: str) -> str:
    sets = ", ".join(f"({column})" for column, _ in DIMENSIONS.values())
    which = " ".join(f"WHEN GROUPING({column}) = 0 THEN '{name}'" for name, (column, _) in DIMENSIONS.items())
    value = " ".join(f"WHEN GROUPING({column}) = 0 THEN {column}" for column, _ in DIMENSIONS.values())
    return (f"SELECT CASE {which} END AS dimension, CASE {value} END AS value, count(*) AS scans"
            f" FROM scans WHERE {where} GROUP BY GROUPING SETS ({sets})")


async def totals(db: asyncpg.Pool[Any], f: ScanFilter) -> dict[str, int]:
    row = await db.fetchrow(
        "SELECT count(*) AS total, count(DISTINCT visitor_hash) AS uniques, count(DISTINCT ip_hash) AS ips"
        f" FROM scans WHERE {f.where}", *f.args)
    assert row is not None
    return {"total_scans": row["total"], "unique_scans": row["uniques"], "unique_ips": row["ips"]}


async def breakdowns(db: asyncpg.Pool[Any], f: ScanFilter, limit: int) -> dict[str, list[dict[str, Any]]]:
    rows = await db.fetch(_breakdown_sql(f.where), *f.args)
    result: dict[str, list[dict[str, Any]]] = {name: [] for name in DIMENSIONS}
    # Most scans first; ties by value so that the order is stable between calls (unknown values last).
    for row in sorted(rows, key=lambda r: (-r["scans"], r["value"] is None, r["value"] or "")):
        entries = result[row["dimension"]]
        if len(entries) < limit:
            entries.append({DIMENSIONS[row["dimension"]][1]: row["value"], "scans": row["scans"]})
    return result


async def timeseries(db: asyncpg.Pool[Any], f: ScanFilter, group_by: str) -> list[dict[str, Any]]:
    # Buckets are UTC days or hours; every bucket that overlaps [since, until) appears, empty or not.
    rows = await db.fetch(
        f"""WITH counted AS (
                SELECT date_trunc($6, scanned_at, 'UTC') AS bucket, count(*) AS scans,
                       count(DISTINCT visitor_hash) AS uniques
                FROM scans WHERE {f.where} GROUP BY 1)
            SELECT b.bucket, coalesce(c.scans, 0) AS scans, coalesce(c.uniques, 0) AS uniques
            FROM generate_series(date_trunc($6, $4::timestamptz, 'UTC'), $5::timestamptz - interval '1 microsecond',
                                 $7::interval) AS b(bucket)
            LEFT JOIN counted c USING (bucket) ORDER BY b.bucket""",
        *f.args, group_by, BUCKETS[group_by])
    return [{"bucket": timestamp(r["bucket"]), "scans": r["scans"], "uniques": r["uniques"]} for r in rows]


async def scan_analytics(db: asyncpg.Pool[Any], f: ScanFilter, group_by: str, limit: int) -> dict[str, Any]:
    counted, broken_down, series = await asyncio.gather(
        totals(db, f), breakdowns(db, f, limit), timeseries(db, f, group_by))
    id_field = "qr_code_id" if f.column == "code_id" else "qr_group_id"
    return {"object": "scan_analytics", id_field: f.object_id, "since": timestamp(f.since),
            "until": timestamp(f.until), "group_by": group_by, "totals": counted, "breakdowns": broken_down,
            "timeseries": series}

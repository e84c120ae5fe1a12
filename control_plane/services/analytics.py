"""Scan analytics for one code or one group: totals, top-N breakdowns and a zero-filled timeseries.

Bots never count. Scan counts come from the hourly rows kept by the ingest worker (`scan_hours`: the scans of
a code's hour and their counts per dimension value), plus the raw scans of the partial hours at either end
of the range. Distinct visitors and IPs cannot be summed across hours: they
are counted exactly from the scans for ranges of up to EXACT_UNIQUES_UP_TO scans, and estimated from
hourly HyperLogLog sketches above that. Independent queries run at once on separate connections.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NotRequired, cast

import asyncpg
from typing_extensions import TypedDict

from shared import unique_sketch
from shared.times import timestamp

# dimension in the response → (column, key of each entry)
DIMENSIONS: dict[str, tuple[str, str]] = {
    "country": ("country", "country"),
    "device": ("device_type", "device_type"),
    "os": ("os", "os"),
    "browser": ("browser", "browser"),
    "scan_method": ("scan_method", "scan_method"),
    "scanner_app": ("scanner_app", "scanner_app"),
    "outcome": ("outcome", "outcome"),
    "rule": ("rule", "rule"),  # docs/rules.md: which rule, or split variant, chose the destination
    "variant": ("variant", "variant"),
}
NUMERIC_DIMENSIONS = frozenset({"rule", "variant"})
BUCKETS = {"day": timedelta(days=1), "hour": timedelta(hours=1)}
# Up to this many scans in a range, unique visitors and IPs are counted exactly from the scans; above it they
# are estimated from hourly HyperLogLog sketches (about 3% standard error), which costs the same at any size.
EXACT_UNIQUES_UP_TO = 25_000  # exact distinct counting of 100,000 scans took ~350 ms here
SKETCH_ROWS_PER_FETCH = 1_000  # 2 MB of hourly sketches held at once, merged in ~7 ms
SCANS_PER_FETCH = 5_000  # ~1.5 MB of the partial hours' raw scans held at once


class Totals(TypedDict):
    total_scans: int
    unique_scans: int  # distinct visitors (IP + user agent)
    unique_ips: int
    bot_scans: int  # bots and link previewers, left out of every other figure


class Bucket(TypedDict):
    bucket: str
    scans: int
    uniques: int


class ScanAnalyticsPublic(TypedDict):
    object: Literal["scan_analytics"]
    qr_code_id: NotRequired[str]
    qr_group_id: NotRequired[str]
    since: str
    until: str
    group_by: Literal["day", "hour"]
    totals: Totals
    # dimension → entries such as {"country": "US", "scans": 220}, most scans first
    breakdowns: dict[str, list[dict[str, Any]]]
    timeseries: list[Bucket]


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
        """Raw scans in [since, until)."""
        assert self.column in ("code_id", "group_id")
        return (f"{self.column} = $1 AND livemode = $2 AND org_id = $3 AND NOT is_bot"
                " AND scanned_at >= $4 AND scanned_at < $5")

    @property
    def bots(self) -> str:
        """Bot scans in [since, until) (partial indexes `scans_code_bots`, `scans_group_bots`)."""
        return (f"{self.column} = $1 AND livemode = $2 AND org_id = $3 AND is_bot"
                " AND scanned_at >= $4 AND scanned_at < $5")

    @property
    def whole_hours(self) -> tuple[datetime, datetime]:
        """The whole UTC hours inside [since, until): those are read from `scan_hours`."""
        first = self.since.replace(minute=0, second=0, microsecond=0)
        if first < self.since:
            first += timedelta(hours=1)
        end = max(self.until.replace(minute=0, second=0, microsecond=0), first)
        return first, end

    @property
    def args(self) -> tuple[Any, ...]:
        return self.object_id, self.livemode, self.org_id, self.since, self.until, *self.whole_hours

    @property
    def whole(self) -> str:
        """The code's (or group's) rows of `scan_hours` for the whole hours (`$6`, `$7` bound them)."""
        return f"{self.column} = $1 AND livemode = $2 AND org_id = $3 AND hour >= $6 AND hour < $7"

    @property
    def partial(self) -> str:
        """Raw human scans of the partial hours at either end of the range."""
        return f"{self.where} AND (scanned_at < $6 OR scanned_at >= $7)"


def _breakdown_sql(f: ScanFilter) -> str:
    """(dimension, value, scans): the whole hours' packed counts ("" for none), and the partial hours' scans
    grouped one dimension at a time."""
    sets = ", ".join(f"({column})" for column, _ in DIMENSIONS.values())
    which = " ".join(f"WHEN GROUPING({column}) = 0 THEN '{name}'" for name, (column, _) in DIMENSIONS.items())
    value = " ".join(f"WHEN GROUPING({column}) = 0 THEN {column}::text" for column, _ in DIMENSIONS.values())
    return f"""SELECT dimension, value, sum(scans)::bigint AS scans FROM (
            SELECT d.key AS dimension, nullif(v.key, '') AS value, v.value::bigint AS scans
            FROM scan_hours h, jsonb_each(h.counts) AS d, jsonb_each_text(d.value) AS v WHERE {f.whole}
            UNION ALL
            SELECT CASE {which} END, CASE {value} END, count(*) FROM scans WHERE {f.partial}
            GROUP BY GROUPING SETS ({sets})
        ) AS counted GROUP BY 1, 2"""


async def totals(db: asyncpg.Pool[Any], f: ScanFilter) -> dict[str, int]:
    # Distinct counts cannot be summed across hours: they read the scans themselves.
    row = await db.fetchrow(
        "SELECT count(*) AS total, count(DISTINCT visitor_hash) AS uniques, count(DISTINCT ip_hash) AS ips"
        f" FROM scans WHERE {f.where}", *f.args[:5])
    assert row is not None
    return {"total_scans": row["total"], "unique_scans": row["uniques"], "unique_ips": row["ips"]}


async def breakdowns(db: asyncpg.Pool[Any], f: ScanFilter, limit: int) -> dict[str, list[dict[str, Any]]]:
    rows = await db.fetch(_breakdown_sql(f), *f.args)
    result: dict[str, list[dict[str, Any]]] = {name: [] for name in DIMENSIONS}
    # Most scans first; ties by value so that the order is stable between calls (unknown values last).
    for row in sorted(rows, key=lambda r: (-r["scans"], r["value"] is None, r["value"] or "")):
        entries = result[row["dimension"]]
        value = row["value"]
        if value is not None and row["dimension"] in NUMERIC_DIMENSIONS:
            value = int(value)
        if len(entries) < limit:
            entries.append({DIMENSIONS[row["dimension"]][1]: value, "scans": row["scans"]})
    return result


async def bot_scans(db: asyncpg.Pool[Any], f: ScanFilter) -> int:
    count: int = await db.fetchval(f"SELECT count(*) FROM scans WHERE {f.bots}", *f.args[:5])
    return count


async def bucket_counts(db: asyncpg.Pool[Any], f: ScanFilter, group_by: str) -> list[tuple[datetime, int]]:
    """Buckets are UTC days or hours; every bucket that overlaps [since, until) appears, empty or not.

    The series steps through UTC wall-clock times (`timestamp`, not `timestamptz`): `timestamptz + '1 day'` is a
    calendar day of the session's zone, which after a change of summer time no longer lands on UTC midnight."""
    rows = await db.fetch(
        f"""WITH counted AS (
                SELECT date_trunc($8, at, 'UTC') AS bucket, sum(scans)::bigint AS scans FROM (
                    SELECT hour AS at, scans FROM scan_hours WHERE {f.whole}
                    UNION ALL
                    SELECT scanned_at, 1 FROM scans WHERE {f.partial}) AS hours
                GROUP BY 1)
            SELECT b.bucket, coalesce(c.scans, 0) AS scans
            FROM (SELECT utc AT TIME ZONE 'UTC' AS bucket
                  FROM generate_series(date_trunc($8, $4::timestamptz, 'UTC') AT TIME ZONE 'UTC',
                                       ($5::timestamptz - interval '1 microsecond') AT TIME ZONE 'UTC',
                                       $9::interval) AS utc) AS b
            LEFT JOIN counted c USING (bucket) ORDER BY b.bucket""",
        *f.args, group_by, BUCKETS[group_by])
    return [(r["bucket"], r["scans"]) for r in rows]


async def exact_bucket_uniques(db: asyncpg.Pool[Any], f: ScanFilter, group_by: str) -> dict[datetime, int]:
    rows = await db.fetch(
        f"SELECT date_trunc($6, scanned_at, 'UTC') AS bucket, count(DISTINCT visitor_hash) AS uniques"
        f" FROM scans WHERE {f.where} GROUP BY 1", *f.args[:5], group_by)
    return {r["bucket"]: r["uniques"] for r in rows}


async def exact_uniques(db: asyncpg.Pool[Any], f: ScanFilter,
                        group_by: str) -> tuple[dict[str, int], dict[datetime, int]]:
    counted, per_bucket = await asyncio.gather(totals(db, f), exact_bucket_uniques(db, f, group_by))
    return counted, per_bucket


_EMPTY = bytes(unique_sketch.REGISTERS)


@dataclass(slots=True)
class _Sketches:
    """The merged sketches of a range so far: visitors per bucket, and IPs overall."""

    group_by: str
    visitors: dict[datetime, bytes] = field(default_factory=dict)
    ips: bytes = _EMPTY

    def add_hours(self, rows: list[asyncpg.Record]) -> None:
        visitors = [(_bucket(row["hour"], self.group_by), row["visitors"]) for row in rows]
        self._merge(visitors, [row["ips"] for row in rows])

    def add_scans(self, rows: list[asyncpg.Record]) -> None:
        """Scans of the partial hours at either end, which no hourly sketch holds."""
        visitors: dict[datetime, bytearray] = defaultdict(unique_sketch.empty)
        ips = unique_sketch.empty()
        for row in rows:
            unique_sketch.add(visitors[_bucket(row["scanned_at"], self.group_by)], row["visitor_hash"])
            unique_sketch.add(ips, row["ip_hash"])
        self._merge(list(visitors.items()), [ips])

    def _merge(self, visitors: list[tuple[datetime, bytes | bytearray]], ips: list[bytes | bytearray]) -> None:
        parts: dict[datetime, list[bytes | bytearray]] = defaultdict(list)
        for bucket, sketch in visitors:
            parts[bucket].append(sketch)
        for bucket, sketches in parts.items():
            self.visitors[bucket] = unique_sketch.union([self.visitors.get(bucket, _EMPTY), *sketches])
        self.ips = unique_sketch.union([self.ips, *ips])

    def estimates(self, total: int) -> tuple[dict[str, int], dict[datetime, int]]:
        everyone = unique_sketch.union(self.visitors.values())
        counted = {"total_scans": total, "unique_scans": min(total, unique_sketch.estimate(everyone)),
                   "unique_ips": min(total, unique_sketch.estimate(self.ips))}
        return counted, {bucket: unique_sketch.estimate(sketch) for bucket, sketch in self.visitors.items()}


async def estimated_uniques(db: asyncpg.Pool[Any], f: ScanFilter, total: int,
                            group_by: str) -> tuple[dict[str, int], dict[datetime, int]]:
    """Merges the hourly sketches per bucket and overall, with sketches made here of the partial hours' scans.

    Ten years of hours are 87,600 sketches of 2 KiB, a busy group's partial hour a million scans: they are read
    SKETCH_ROWS_PER_FETCH and SCANS_PER_FETCH at a time and merged off the event loop, so one request holds a
    few MB and never stalls the others (docs/api.md §4.2)."""
    merged = _Sketches(group_by)
    async with db.acquire() as conn, conn.transaction(readonly=True):  # a cursor lives in a transaction
        edges = await conn.cursor(f"SELECT scanned_at, visitor_hash, ip_hash FROM scans WHERE {f.partial}", *f.args)
        while rows := await edges.fetch(SCANS_PER_FETCH):
            await asyncio.to_thread(merged.add_scans, rows)
        hours = await conn.cursor(f"SELECT hour, visitors, ips FROM scan_hours WHERE {f.column} = $1"
                                  " AND livemode = $2 AND org_id = $3 AND hour >= $4 AND hour < $5",
                                  f.object_id, f.livemode, f.org_id, *f.whole_hours)
        while rows := await hours.fetch(SKETCH_ROWS_PER_FETCH):
            await asyncio.to_thread(merged.add_hours, rows)
    return await asyncio.to_thread(merged.estimates, total)


def _bucket(moment: datetime, group_by: str) -> datetime:
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if group_by == "day" else moment


async def scan_analytics(db: asyncpg.Pool[Any], f: ScanFilter, group_by: str, limit: int) -> ScanAnalyticsPublic:
    # The total decides how uniques are counted; the sketches are read only when it says so.
    broken_down, series, bots = await asyncio.gather(
        breakdowns(db, f, limit), bucket_counts(db, f, group_by), bot_scans(db, f))
    total = sum(scans for _, scans in series)
    if total <= EXACT_UNIQUES_UP_TO:
        counted, uniques = await exact_uniques(db, f, group_by)
    else:
        counted, uniques = await estimated_uniques(db, f, total, group_by)
    counted["bot_scans"] = bots
    timeseries = [{"bucket": timestamp(bucket), "scans": scans, "uniques": min(scans, uniques.get(bucket, 0))}
                  for bucket, scans in series]
    id_field = "qr_code_id" if f.column == "code_id" else "qr_group_id"
    return cast(ScanAnalyticsPublic, {"object": "scan_analytics", id_field: f.object_id, "since": timestamp(f.since),
            "until": timestamp(f.until), "group_by": group_by, "totals": counted, "breakdowns": broken_down,
            "timeseries": timeseries})

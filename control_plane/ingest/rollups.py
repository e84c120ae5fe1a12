"""Hourly rollups of human scans per code and dimension values (`scan_rollups`), and hourly sketches of
their visitors and IPs (`scan_sketches`), kept by the ingest worker.

Counted in Python from the rows the batch really inserted (the worker has them in hand), then added with
one upsert, in the ingest transaction: cheaper than aggregating the inserted rows again in SQL.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import asyncpg

from control_plane.ingest.scan_row import ScanRow
from shared import unique_sketch


class RollupKey(NamedTuple):
    """A `scan_rollups` row's key, in primary-key order (so that sorting keys sorts by the primary key)."""

    code_id: str
    hour: datetime
    group_id: str  # '' for none, like country and scanner_app: a primary key cannot hold NULL
    livemode: bool
    country: str
    device_type: str
    os: str
    browser: str
    scan_method: str
    scanner_app: str
    outcome: str
    org_id: str  # not in the primary key, but fixed by code_id: sorting stays in primary-key order
    rule: int  # -1 for none
    variant: int


class SketchKey(NamedTuple):
    """A `scan_sketches` row's key, in primary-key order."""

    code_id: str
    hour: datetime
    group_id: str
    livemode: bool
    org_id: str


UPSERT = f"""
INSERT INTO scan_rollups AS r ({", ".join(RollupKey._fields)}, scans)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::boolean[], $5::text[], $6::text[], $7::text[],
                     $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::smallint[], $14::smallint[],
                     $15::bigint[])
ON CONFLICT (code_id, hour, group_id, livemode, country, device_type, os, browser, scan_method, scanner_app,
             outcome, rule, variant) DO UPDATE SET scans = r.scans + EXCLUDED.scans
"""


Ranks = dict[int, int]  # a sparse sketch: register → rank (shared.unique_sketch.note)


@dataclass(slots=True)
class Summary:
    """What a batch of rows adds to the rollups, the sketches and `scan_count`: human scans only."""

    counts: dict[RollupKey, int] = field(default_factory=dict)
    sketches: dict[SketchKey, tuple[Ranks, Ranks]] = field(default_factory=dict)  # visitors, IPs

    def per_code(self) -> Counter[str]:
        per_code: Counter[str] = Counter()
        for key, n in self.counts.items():
            per_code[key.code_id] += n
        return per_code

    def add(self, rows: Iterable[ScanRow]) -> None:
        """One pass over the rows; the hottest loop of the worker after decoding. Each row is unpacked in field
        order and keys are made in field order, not by name, which costs three times as much (_ROW_FIELDS and
        tests/control_plane/ingest/test_rollups.py hold them to their names); the hour of a scan is worked
        out once per hour, as rows come in time order."""
        counts, sketches = self.counts, self.sketches
        hour, next_hour = _EPOCH, _EPOCH
        for (_, at, code_id, group_id, org_id, livemode, outcome, _, scan_method, ip_hash, visitor_hash, _, _, _,
             country, is_bot, _, device_type, os, browser, scanner_app, rule, variant) in rows:
            if is_bot:
                continue
            if not hour <= at < next_hour:
                hour = at.replace(minute=0, second=0, microsecond=0)
                next_hour = hour + _HOUR
            group_id = group_id or ""
            key = _key(RollupKey, (code_id, hour, group_id, livemode, country or "", device_type, os, browser,
                                   scan_method, scanner_app or "", outcome, org_id, -1 if rule is None else rule,
                                   -1 if variant is None else variant))
            counts[key] = counts.get(key, 0) + 1
            sketch_key = _key(SketchKey, (code_id, hour, group_id, livemode, org_id))
            ranks = sketches.get(sketch_key)
            if ranks is None:
                ranks = sketches[sketch_key] = ({}, {})
            visitors, ips = ranks
            index, rank = _register(visitor_hash)
            if rank > visitors.get(index, 0):
                visitors[index] = rank
            index, rank = _register(ip_hash)
            if rank > ips.get(index, 0):
                ips[index] = rank


# The names `Summary.add` unpacks a row into, in ScanRow's field order (checked on import).
_ROW_FIELDS = ("scan_id", "scanned_at", "code_id", "group_id", "org_id", "livemode", "outcome", "method",
               "scan_method", "ip_hash", "visitor_hash", "user_agent", "referer", "accept_language", "country",
               "is_bot", "properties", "device_type", "os", "browser", "scanner_app", "rule", "variant")
if ScanRow._fields != _ROW_FIELDS:
    raise ImportError("control_plane.ingest.rollups unpacks ScanRow by position: update Summary.add")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR = timedelta(hours=1)
_register = unique_sketch.register
_key = tuple.__new__


def summarise(rows: Iterable[ScanRow]) -> Summary:
    summary = Summary()
    summary.add(rows)
    return summary


def _columns(rows: list[Any]) -> list[list[Any]]:
    """Rows to columns, for `unnest`."""
    return [list(column) for column in zip(*rows, strict=True)]


async def add_rollups(conn: asyncpg.Connection[Any], counts: dict[RollupKey, int]) -> None:
    if not counts:
        return
    keys = sorted(counts)  # two workers adding to the same rows lock them in the same order
    await conn.execute(UPSERT, *_columns(keys), [counts[k] for k in keys])


# Existing sketches are locked and merged in Python (fast), then written back; a sketch another worker
# created meanwhile is merged in SQL on conflict (slow per row, but only in that race).
SKETCH_LOCK = """
SELECT s.code_id, s.hour, s.group_id, s.livemode, s.visitors, s.ips FROM scan_sketches s
JOIN unnest($1::text[], $2::timestamptz[], $3::text[], $4::boolean[]) AS k(code_id, hour, group_id, livemode)
  USING (code_id, hour, group_id, livemode)
ORDER BY s.code_id, s.hour, s.group_id, s.livemode FOR UPDATE OF s
"""
SKETCH_UPDATE = """
UPDATE scan_sketches s SET visitors = k.visitors, ips = k.ips
FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::boolean[], $5::bytea[], $6::bytea[])
  AS k(code_id, hour, group_id, livemode, visitors, ips)
WHERE s.code_id = k.code_id AND s.hour = k.hour AND s.group_id = k.group_id AND s.livemode = k.livemode
"""
SKETCH_INSERT = """
INSERT INTO scan_sketches AS s (code_id, hour, group_id, livemode, org_id, visitors, ips)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::boolean[], $5::text[], $6::bytea[], $7::bytea[])
ON CONFLICT (code_id, hour, group_id, livemode)
DO UPDATE SET visitors = sketch_union(s.visitors, EXCLUDED.visitors), ips = sketch_union(s.ips, EXCLUDED.ips)
"""


async def add_sketches(conn: asyncpg.Connection[Any], sketches: dict[SketchKey, tuple[Ranks, Ranks]]) -> None:
    if not sketches:
        return
    keys = sorted(sketches)
    by_row = {k[:4]: k for k in keys}  # (code_id, hour, group_id, livemode): the primary key
    existing = await conn.fetch(SKETCH_LOCK, *_columns(list(by_row)))
    sketches = dict(sketches)  # the caller's stays whole
    if existing:
        merged = []
        for row in existing:
            row_key = (row["code_id"], row["hour"], row["group_id"], row["livemode"])
            visitors, ips = sketches.pop(by_row[row_key])
            merged.append((*row_key, unique_sketch.apply(row["visitors"], visitors),
                           unique_sketch.apply(row["ips"], ips)))
        await conn.execute(SKETCH_UPDATE, *_columns(merged))
    fresh = [k for k in keys if k in sketches]
    if fresh:
        empty = bytes(unique_sketch.REGISTERS)
        await conn.execute(SKETCH_INSERT, *_columns(fresh), [unique_sketch.apply(empty, sketches[k][0]) for k in fresh],
                           [unique_sketch.apply(empty, sketches[k][1]) for k in fresh])

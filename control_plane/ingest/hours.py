"""Hourly analytics of human scans per code (`scan_hours`, migration 0015): how many scans, their counts per
dimension value, and HyperLogLog sketches of their visitors and IPs — kept by the ingest worker in the
transaction that stores the scans (docs/ingest.md, "Hourly counts").

One row per code and hour packs every dimension's counts in one object, because the analytics read one
dimension at a time and never cross two (docs/api.md §2.8). A row per combination of every dimension hardly
compressed: ~0.6 rows per scan over 1,000 codes, 0.26 even for a code scanned hundreds of times an hour;
this is 0.15–0.23 and 0.004 (`python -m loadtests.rollup_shapes`, BENCHMARKS.md).

Counted in Python from the rows the batch really inserted. Rows that exist are locked, merged in Python and
written back; the others are inserted, and a row another worker inserted meanwhile is then locked and merged
the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import asyncpg
import orjson

from control_plane.ingest.scan_row import ScanRow
from shared import unique_sketch


class HourKey(NamedTuple):
    """A `scan_hours` row's key, in primary-key order (so that sorting keys sorts by the primary key)."""

    code_id: str
    hour: datetime
    group_id: str  # '' for none: a primary key cannot hold NULL
    livemode: bool
    org_id: str  # not in the primary key, but fixed by code_id: sorting stays in primary-key order


# The dimensions counted, named as the analytics API's breakdowns, in the order of a `Combination`.
DIMENSIONS = ("country", "device", "os", "browser", "scan_method", "scanner_app", "outcome", "rule", "variant")
Combination = tuple[str | int | None, ...]  # a scan's value in each dimension; None for none
Ranks = dict[int, int]  # a sparse sketch: register → rank (shared.unique_sketch.note)
Counts = dict[str, dict[str, int]]  # dimension → value ("" for none) → scans


@dataclass(slots=True)
class Hour:
    """What a batch adds to one code's hour."""

    scans: int = 0
    combinations: dict[Combination, int] = field(default_factory=dict)  # cheaper per scan than 9 counters
    visitors: Ranks = field(default_factory=dict)
    ips: Ranks = field(default_factory=dict)

    def counts(self) -> Counts:
        packed: Counts = {name: {} for name in DIMENSIONS}
        for combination, n in self.combinations.items():
            for name, value in zip(DIMENSIONS, combination, strict=True):
                values = packed[name]
                text = "" if value is None else str(value)
                values[text] = values.get(text, 0) + n
        return packed


def add_counts(stored: Counts, added: Counts) -> Counts:
    """`stored` with `added` counted in (a new object)."""
    merged = {name: dict(values) for name, values in stored.items()}
    for name, values in added.items():
        into = merged.setdefault(name, {})
        for value, n in values.items():
            into[value] = into.get(value, 0) + n
    return merged


@dataclass(slots=True)
class Summary:
    """What a batch of rows adds to `scan_hours` and `scan_count`: human scans only."""

    hours: dict[HourKey, Hour] = field(default_factory=dict)

    def per_code(self) -> Counter[str]:
        per_code: Counter[str] = Counter()
        for key, hour in self.hours.items():
            per_code[key.code_id] += hour.scans
        return per_code

    def add(self, rows: Iterable[ScanRow]) -> None:
        """One pass over the rows; the hottest loop of the worker after decoding. Each row is unpacked in field
        order and keys are made in field order, not by name, which costs three times as much (_ROW_FIELDS and
        tests/control_plane/ingest/test_hours.py hold them to their names); the hour of a scan is worked out
        once per hour, as rows come in time order."""
        hours = self.hours
        at_hour, next_hour = _EPOCH, _EPOCH
        for (_, at, code_id, group_id, org_id, livemode, outcome, _, scan_method, ip_hash, visitor_hash, _, _, _,
             country, is_bot, _, device_type, os, browser, scanner_app, rule, variant) in rows:
            if is_bot:
                continue
            if not at_hour <= at < next_hour:
                at_hour = at.replace(minute=0, second=0, microsecond=0)
                next_hour = at_hour + _HOUR
            key = _key(HourKey, (code_id, at_hour, group_id or "", livemode, org_id))
            hour = hours.get(key)
            if hour is None:
                hour = hours[key] = Hour()
            hour.scans += 1
            combination = (country, device_type, os, browser, scan_method, scanner_app, outcome, rule, variant)
            combinations = hour.combinations
            combinations[combination] = combinations.get(combination, 0) + 1
            index, rank = _register(visitor_hash)
            if rank > hour.visitors.get(index, 0):
                hour.visitors[index] = rank
            index, rank = _register(ip_hash)
            if rank > hour.ips.get(index, 0):
                hour.ips[index] = rank


# The names `Summary.add` unpacks a row into, in ScanRow's field order (checked on import).
_ROW_FIELDS = ("scan_id", "scanned_at", "code_id", "group_id", "org_id", "livemode", "outcome", "method",
               "scan_method", "ip_hash", "visitor_hash", "user_agent", "referer", "accept_language", "country",
               "is_bot", "properties", "device_type", "os", "browser", "scanner_app", "rule", "variant")
if ScanRow._fields != _ROW_FIELDS:
    raise ImportError("control_plane.ingest.hours unpacks ScanRow by position: update Summary.add")
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


_KEYS = "$1::text[], $2::timestamptz[], $3::text[], $4::boolean[]"
LOCK = f"""
SELECT h.code_id, h.hour, h.group_id, h.livemode, h.counts::text AS counts, h.visitors, h.ips FROM scan_hours h
JOIN unnest({_KEYS}) AS k(code_id, hour, group_id, livemode) USING (code_id, hour, group_id, livemode)
ORDER BY h.code_id, h.hour, h.group_id, h.livemode FOR UPDATE OF h
"""
UPDATE = f"""
UPDATE scan_hours h SET scans = h.scans + k.scans, counts = k.counts::jsonb, visitors = k.visitors, ips = k.ips
FROM unnest({_KEYS}, $5::bigint[], $6::text[], $7::bytea[], $8::bytea[])
  AS k(code_id, hour, group_id, livemode, scans, counts, visitors, ips)
WHERE h.code_id = k.code_id AND h.hour = k.hour AND h.group_id = k.group_id AND h.livemode = k.livemode
"""
# A row another worker inserted meanwhile is skipped (after waiting for its transaction), then merged like
# any existing row: no merge in SQL, which costs PostgreSQL far more per row than Python.
INSERT = f"""
INSERT INTO scan_hours (code_id, hour, group_id, livemode, org_id, scans, counts, visitors, ips)
SELECT k.code_id, k.hour, k.group_id, k.livemode, k.org_id, k.scans, k.counts::jsonb, k.visitors, k.ips
FROM unnest({_KEYS}, $5::text[], $6::bigint[], $7::text[], $8::bytea[], $9::bytea[])
  AS k(code_id, hour, group_id, livemode, org_id, scans, counts, visitors, ips)
ON CONFLICT (code_id, hour, group_id, livemode) DO NOTHING
RETURNING code_id, hour, group_id, livemode
"""


async def add_hours(conn: asyncpg.Connection[Any], hours: dict[HourKey, Hour]) -> None:
    if not hours:
        return
    keys = sorted(hours)  # two workers adding to the same rows lock them in the same order
    fresh = await _merge_existing(conn, keys, hours)
    if fresh:
        empty = bytes(unique_sketch.REGISTERS)
        inserted = await conn.fetch(INSERT, *_columns([
            (*key, hours[key].scans, _json(hours[key].counts()), unique_sketch.apply(empty, hours[key].visitors),
             unique_sketch.apply(empty, hours[key].ips)) for key in fresh]))
        if len(inserted) < len(fresh):  # another worker created some of them meanwhile
            done = {tuple(row) for row in inserted}
            if await _merge_existing(conn, [key for key in fresh if key[:4] not in done], hours):
                # Inserted by another transaction, yet gone already: never drop counts. Like any conflict
                # between transactions, the worker retries the batch (not counted against the entries).
                raise asyncpg.exceptions.SerializationError("scan_hours rows vanished while adding to them")


async def _merge_existing(conn: asyncpg.Connection[Any], keys: list[HourKey],
                          hours: dict[HourKey, Hour]) -> list[HourKey]:
    """Locks the rows of `keys` that exist and adds `hours` to them; returns the keys with no row yet."""
    by_row = {key[:4]: key for key in keys}  # (code_id, hour, group_id, livemode): the primary key
    merged = []
    for row in await conn.fetch(LOCK, *_columns(list(by_row))):
        row_key = (row["code_id"], row["hour"], row["group_id"], row["livemode"])
        hour = hours[by_row.pop(row_key)]
        merged.append((*row_key, hour.scans, _json(add_counts(orjson.loads(row["counts"]), hour.counts())),
                       unique_sketch.apply(row["visitors"], hour.visitors), unique_sketch.apply(row["ips"], hour.ips)))
    if merged:
        await conn.execute(UPDATE, *_columns(merged))
    return list(by_row.values())


def _json(counts: Counts) -> str:
    return orjson.dumps(counts).decode()

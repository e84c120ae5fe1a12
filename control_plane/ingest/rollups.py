"""Hourly rollups of human scans per code and dimension values (`scan_rollups`), and hourly sketches of
their visitors and IPs (`scan_sketches`), kept by the ingest worker.

Counted in Python from the rows the batch really inserted (the worker has them in hand), then added with
one upsert, in the ingest transaction: cheaper than aggregating the inserted rows again in SQL.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import asyncpg

from shared import unique_sketch

# Positions in an ingest row (control_plane.ingest.worker.COLUMNS).
SCANNED_AT, CODE_ID, GROUP_ID, ORG_ID, LIVEMODE, OUTCOME = 1, 2, 3, 4, 5, 6
SCAN_METHOD, IP_HASH, VISITOR_HASH, COUNTRY, IS_BOT = 8, 9, 10, 14, 15
DEVICE_TYPE, OS, BROWSER, SCANNER_APP = 17, 18, 19, 20

Key = tuple[Any, ...]
UPSERT = """
INSERT INTO scan_rollups AS r (org_id, code_id, group_id, livemode, hour, country, device_type, os, browser,
                               scan_method, scanner_app, outcome, scans)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::boolean[], $5::timestamptz[], $6::text[], $7::text[],
                     $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[])
ON CONFLICT (code_id, hour, group_id, livemode, country, device_type, os, browser, scan_method, scanner_app,
             outcome) DO UPDATE SET scans = r.scans + EXCLUDED.scans
"""


def count_humans(rows: Iterable[tuple[Any, ...]]) -> Counter[Key]:
    """Human scans per rollup key. Unknown country and no scanner app become '' (the key cannot hold NULL)."""
    counts: Counter[Key] = Counter()
    for row in rows:
        if not row[IS_BOT]:
            hour = row[SCANNED_AT].replace(minute=0, second=0, microsecond=0)
            counts[(row[ORG_ID], row[CODE_ID], row[GROUP_ID] or "", row[LIVEMODE], hour, row[COUNTRY] or "",
                    row[DEVICE_TYPE], row[OS], row[BROWSER], row[SCAN_METHOD], row[SCANNER_APP] or "",
                    row[OUTCOME])] += 1
    return counts


async def add_rollups(conn: asyncpg.Connection[Any], counts: Counter[Key]) -> None:
    if not counts:
        return
    # Sorted, so that two workers adding to the same rows lock them in the same order.
    keys = sorted(counts, key=lambda k: (k[1], k[4], k[2:4], k[5:]))
    columns = [list(column) for column in zip(*keys, strict=True)]
    await conn.execute(UPSERT, *columns, [counts[k] for k in keys])


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
INSERT INTO scan_sketches AS s (org_id, code_id, group_id, livemode, hour, visitors, ips)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::boolean[], $5::timestamptz[], $6::bytea[], $7::bytea[])
ON CONFLICT (code_id, hour, group_id, livemode)
DO UPDATE SET visitors = sketch_union(s.visitors, EXCLUDED.visitors), ips = sketch_union(s.ips, EXCLUDED.ips)
"""


def sketch_humans(rows: Iterable[tuple[Any, ...]]) -> dict[Key, tuple[bytearray, bytearray]]:
    """Visitor and IP sketches of the human scans per (org, code, group, livemode, hour)."""
    sketches: dict[Key, tuple[bytearray, bytearray]] = {}
    for row in rows:
        if not row[IS_BOT]:
            hour = row[SCANNED_AT].replace(minute=0, second=0, microsecond=0)
            key = (row[ORG_ID], row[CODE_ID], row[GROUP_ID] or "", row[LIVEMODE], hour)
            visitors, ips = sketches.get(key) or sketches.setdefault(key, (unique_sketch.empty(),
                                                                           unique_sketch.empty()))
            unique_sketch.add(visitors, row[VISITOR_HASH])
            unique_sketch.add(ips, row[IP_HASH])
    return sketches


async def add_sketches(conn: asyncpg.Connection[Any], sketches: dict[Key, tuple[bytearray, bytearray]]) -> None:
    if not sketches:
        return
    keys = sorted(sketches, key=lambda k: (k[1], k[4], k[2], k[3]))
    by_row = {(k[1], k[4], k[2], k[3]): k for k in keys}
    rows = list(by_row)
    existing = await conn.fetch(SKETCH_LOCK, *[list(column) for column in zip(*rows, strict=True)])
    if existing:
        merged = []
        for row in existing:
            row_key = (row["code_id"], row["hour"], row["group_id"], row["livemode"])
            visitors, ips = sketches.pop(by_row[row_key])
            merged.append((*row_key, unique_sketch.union([row["visitors"], visitors]),
                           unique_sketch.union([row["ips"], ips])))
        await conn.execute(SKETCH_UPDATE, *[list(column) for column in zip(*merged, strict=True)])
    fresh = [k for k in keys if k in sketches]
    if fresh:
        await conn.execute(SKETCH_INSERT, *[list(column) for column in zip(*fresh, strict=True)],
                           [bytes(sketches[k][0]) for k in fresh], [bytes(sketches[k][1]) for k in fresh])


def humans_per_code(counts: Counter[Key]) -> Counter[str]:
    per_code: Counter[str] = Counter()
    for key, n in counts.items():
        per_code[key[1]] += n
    return per_code

"""How many derived rows a rollup design costs per scan, over the traffic `make bench-ingest` stores.

No database: the scans of `loadtests/scan_traffic.py` are decoded and enriched as the ingest worker does
(`control_plane.ingest.scan_row`), bots left out as the rollups do, and three shapes of hourly rollup are
counted, per batch of 5,000 (the upserts a worker sends) and in all (the table's rows):

- cross: today's `scan_rollups`, one row per code, hour and combination of every dimension;
- per dimension: one row per code, hour, dimension and value (what the analytics API reads: one dimension
  at a time, docs/api.md §2.8);
- code × hour: one row per code and hour holding every dimension's counts packed together.

    python -m loadtests.rollup_shapes
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from control_plane.ingest.scan_row import ScanRow, scan_row
from loadtests.scan_traffic import Code, scan_events
from shared.ids import new_id
from shared.scan_event import ScanEvent

BATCH = 5_000


def keys(row: ScanRow) -> tuple[tuple[object, ...], list[tuple[object, ...]], tuple[object, ...]]:
    hour = int(row.scanned_at.timestamp()) // 3600
    code = (row.code_id, hour)
    dimensions = {"country": row.country, "device": row.device_type, "os": row.os, "browser": row.browser,
                  "method": row.scan_method, "app": row.scanner_app, "outcome": row.outcome}
    cross = (*code, *dimensions.values(), row.rule, row.variant)
    return cross, [(*code, name, value) for name, value in dimensions.items()], code


def count(rows: Iterable[ScanRow], scans: int) -> str:
    shapes: list[list[set[tuple[object, ...]]]] = [[set(), set()] for _ in range(3)]  # [in this batch, in all]
    upserts = [0, 0, 0]
    for n, row in enumerate(rows):
        if n % BATCH == 0:
            for i, (batch, everything) in enumerate(shapes):
                upserts[i] += len(batch)
                everything |= batch
                batch.clear()
        if row.is_bot:
            continue
        cross, per_dimension, code = keys(row)
        shapes[0][0].add(cross)
        shapes[1][0].update(per_dimension)
        shapes[2][0].add(code)
    for i, (batch, everything) in enumerate(shapes):
        upserts[i] += len(batch)
        everything |= batch
    names = ("cross", "per dimension", "code x hour")
    return "; ".join(f"{name} {upserts[i] / scans:.3f} upserts and {len(shapes[i][1]) / scans:.3f} rows"
                     for i, name in enumerate(names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scans", type=int, default=200_000)
    args = parser.parse_args()
    print(f"derived rows per scan, {args.scans:,} scans, batches of {BATCH:,}, Zipf s=1.1")
    for codes, hours in ((1_000, 48), (100, 720), (1, 720)):
        table = [Code(new_id("qr"), "org", f"grp_{n % 50}" if n % 2 else None) for n in range(codes)]
        rows = (scan_row(ScanEvent.decode(raw)) for raw in scan_events(table, args.scans, hours=hours, seed=1))
        print(f"  {codes:>5,} codes over {hours:>3} h: {count(rows, args.scans)}")


if __name__ == "__main__":
    main()

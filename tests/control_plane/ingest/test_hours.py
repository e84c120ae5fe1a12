"""What a batch adds to `scan_hours`, worked out in one pass (control_plane.ingest.hours): keys made in field
order for speed, held here to their names; counts packed per dimension as the analytics read them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from control_plane.ingest.hours import HourKey, Summary, add_counts, add_hours, summarise
from control_plane.ingest.scan_row import scan_row
from shared import unique_sketch
from shared.scan_event import ScanEvent

IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
          " Version/17.0 Mobile/15E148 Safari/604.1")


def event(ts_ms: int, visitor: str, **fields: object) -> ScanEvent:
    values: dict[str, object] = {
        "scan_id": "0190a4b2-0000-7000-8000-000000000000", "ts_ms": ts_ms, "code_id": "qr_x", "group_id": "grp_x",
        "org_id": "org_x", "livemode": True, "outcome": "redirected", "method": "GET", "marker": True,
        "ip_hash": "ip-" + visitor, "visitor_hash": visitor, "user_agent": IPHONE, "country": "FR", **fields}
    return ScanEvent(**values)  # type: ignore[arg-type]


def test_each_value_is_counted_under_its_dimension_and_bots_count_nowhere() -> None:
    at = 1_700_000_000_123  # 2023-11-14 22:13:20 UTC
    rows = [scan_row(e) for e in (
        event(at, "a", rule=2, variant=1), event(at + 60_000, "b", rule=2, variant=1),
        event(at, "c", group_id=None, country=None, marker=False),
        event(at + 3_600_000, "e", country="DE", rule=0),  # the next hour
        event(at, "d", method="HEAD"),  # a link checker: a bot
    )]
    summary = summarise(rows)
    hour = datetime(2023, 11, 14, 22, tzinfo=UTC)
    grouped = HourKey(code_id="qr_x", hour=hour, group_id="grp_x", livemode=True, org_id="org_x")
    ungrouped, later = grouped._replace(group_id=""), grouped._replace(hour=datetime(2023, 11, 14, 23, tzinfo=UTC))
    assert set(summary.hours) == {grouped, ungrouped, later}
    assert summary.hours[grouped].counts() == {
        "country": {"FR": 2}, "device": {"mobile": 2}, "os": {"iOS": 2}, "browser": {"Mobile Safari": 2},
        "scan_method": {"camera": 2}, "scanner_app": {"iOS Camera": 2}, "outcome": {"redirected": 2},
        "rule": {"2": 2}, "variant": {"1": 2}}
    assert summary.hours[ungrouped].counts() == {
        "country": {"": 1}, "device": {"mobile": 1}, "os": {"iOS": 1}, "browser": {"Mobile Safari": 1},
        "scan_method": {"manual_entry": 1}, "scanner_app": {"": 1}, "outcome": {"redirected": 1},
        "rule": {"": 1}, "variant": {"": 1}}
    assert summary.hours[later].counts()["rule"] == {"0": 1}
    expected_visitors: dict[int, int] = {}
    expected_ips: dict[int, int] = {}
    for value in ("a", "b"):
        unique_sketch.note(expected_visitors, value)
        unique_sketch.note(expected_ips, "ip-" + value)
    assert (summary.hours[grouped].visitors, summary.hours[grouped].ips) == (expected_visitors, expected_ips)
    assert [summary.hours[k].scans for k in (grouped, ungrouped, later)] == [2, 1, 1]
    assert summary.per_code() == {"qr_x": 4}


def test_a_summary_added_to_in_slices_equals_one_made_at_once() -> None:
    rows = [scan_row(event(1_700_000_000_000 + n * 600_000, str(n), country=("FR", "DE", None)[n % 3]))
            for n in range(30)]
    whole = summarise(rows)
    sliced = summarise(rows[:7])
    sliced.add(rows[7:20])
    sliced.add(rows[20:])
    assert sliced.hours == whole.hours


def test_stored_counts_add_up_value_by_value() -> None:
    stored = {"country": {"FR": 2, "": 1}, "outcome": {"redirected": 3}}
    added = {"country": {"FR": 1, "DE": 4}, "rule": {"": 5}}
    assert add_counts(stored, added) == {"country": {"FR": 3, "": 1, "DE": 4}, "outcome": {"redirected": 3},
                                         "rule": {"": 5}}
    assert stored == {"country": {"FR": 2, "": 1}, "outcome": {"redirected": 3}}  # not changed in place


async def test_two_workers_creating_the_same_hours_at_once_lose_no_count(database_url: str) -> None:
    rows = [scan_row(event(1_700_000_000_000 + n * 60_000, str(n), country=("FR", "DE")[n % 2])) for n in range(6)]
    first, second = summarise(rows[:4]), summarise(rows[4:])
    one, two = [await asyncpg.connect(database_url, timeout=10) for _ in range(2)]
    try:
        async with one.transaction():
            await add_hours(one, first.hours)  # inserts the hour, and holds it until commit
            racing = asyncio.create_task(_in_transaction(two, second))
            await asyncio.sleep(0.2)
            assert not racing.done(), "the second insert waits for the first transaction"
        await racing  # then finds the row there, locks it and adds to it
        row = await one.fetchrow("SELECT scans, counts::text AS counts, visitors FROM scan_hours")
    finally:
        await one.close()
        await two.close()
    assert row is not None and row["scans"] == 6
    assert orjson.loads(row["counts"])["country"] == {"FR": 3, "DE": 3}
    everyone: dict[int, int] = {}
    for n in range(6):
        unique_sketch.note(everyone, str(n))
    assert row["visitors"] == unique_sketch.apply(bytes(unique_sketch.REGISTERS), everyone)


async def _in_transaction(conn: asyncpg.Connection[Any], summary: Summary) -> None:
    async with conn.transaction():
        await add_hours(conn, summary.hours)

"""What a batch adds to the rollups and sketches, worked out in one pass (control_plane.ingest.rollups): keys
made in field order for speed, held here to their names."""

from __future__ import annotations

from datetime import UTC, datetime

from control_plane.ingest.rollups import RollupKey, SketchKey, summarise
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


def test_keys_carry_each_value_under_its_own_name_and_bots_count_nowhere() -> None:
    at = 1_700_000_000_123  # 2023-11-14 22:13:20 UTC
    rows = [scan_row(e) for e in (
        event(at, "a", rule=2, variant=1), event(at + 60_000, "b", rule=2, variant=1),
        event(at, "c", group_id=None, country=None, marker=False),
        event(at, "d", method="HEAD"),  # a link checker: a bot
    )]
    summary = summarise(rows)
    hour = datetime(2023, 11, 14, 22, tzinfo=UTC)
    assert summary.counts == {
        RollupKey(code_id="qr_x", hour=hour, group_id="grp_x", livemode=True, country="FR", device_type="mobile",
                  os="iOS", browser="Mobile Safari", scan_method="camera", scanner_app="iOS Camera",
                  outcome="redirected", org_id="org_x", rule=2, variant=1): 2,
        RollupKey(code_id="qr_x", hour=hour, group_id="", livemode=True, country="", device_type="mobile", os="iOS",
                  browser="Mobile Safari", scan_method="manual_entry", scanner_app="", outcome="redirected",
                  org_id="org_x", rule=-1, variant=-1): 1,
    }
    grouped = SketchKey(code_id="qr_x", hour=hour, group_id="grp_x", livemode=True, org_id="org_x")
    assert set(summary.sketches) == {grouped, grouped._replace(group_id="")}
    visitors, ips = summary.sketches[grouped]
    expected_visitors: dict[int, int] = {}
    expected_ips: dict[int, int] = {}
    for value in ("a", "b"):
        unique_sketch.note(expected_visitors, value)
        unique_sketch.note(expected_ips, "ip-" + value)
    assert (visitors, ips) == (expected_visitors, expected_ips)
    assert summary.per_code() == {"qr_x": 3}


def test_a_summary_added_to_in_slices_equals_one_made_at_once() -> None:
    rows = [scan_row(event(1_700_000_000_000 + n * 600_000, str(n), country=("FR", "DE", None)[n % 3]))
            for n in range(30)]
    whole = summarise(rows)
    sliced = summarise(rows[:7])
    sliced.add(rows[7:20])
    sliced.add(rows[20:])
    assert (sliced.counts, sliced.sketches) == (whole.counts, whole.sketches)

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.scan_event import LATEST_TS_MS, ScanEvent, event_head, finish_event


@pytest.mark.parametrize(("group_id", "properties", "rule", "variant"), [
    ("grp_1", {"venue": "Brunswick", "table": "12"}, None, None),
    (None, {}, 3, None),
    ("grp_2", {'quote "and" \\ back': "café ☕\n"}, None, 1),
])
def test_an_event_from_its_prepared_head_reads_like_the_whole_event(
        group_id: str | None, properties: dict[str, str], rule: int | None, variant: int | None) -> None:
    """The edge encodes a code's constant members once; the ingest worker must read exactly what it would
    have read from the event encoded whole."""
    whole = ScanEvent("0190a4b2-0000-7000-8000-000000000000", 1_700_000_000_123, "qr_1", group_id, "org_1", False,
                      "redirected", "HEAD", True, "a" * 32, "b" * 32, 'Mozilla/5.0 "x"', "https://r.example/",
                      "de-DE", "DE", properties, rule, variant)
    head = event_head(whole.code_id, whole.group_id, whole.org_id, whole.livemode, properties)
    scan = {name: getattr(whole, name) for name in ScanEvent.__dataclass_fields__
            if name not in ("code_id", "group_id", "org_id", "livemode", "properties")}
    assert ScanEvent.decode(finish_event(head, scan)) == whole == ScanEvent.decode(whole.encode())


@pytest.mark.parametrize("ts_ms", [-1, LATEST_TS_MS, 253_402_299_000_000, 2**53])
def test_a_time_before_1970_or_on_the_last_day_of_9999_is_undecodable(ts_ms: int) -> None:
    """The hour of 9999-12-31T23:30Z has no next hour to be counted in: the worker refuses such times at once."""
    event = ScanEvent("0190a4b2-0000-7000-8000-000000000000", ts_ms, "qr_1", None, "org_1", True, "redirected",
                      "GET", True, "a" * 32, "b" * 32)
    with pytest.raises(ValueError, match="ts_ms"):
        ScanEvent.decode(event.encode())
    assert ScanEvent.decode(replace(event, ts_ms=LATEST_TS_MS - 1).encode()).ts_ms == LATEST_TS_MS - 1

"""The scan record: one event definition, one row definition, held to the table they are stored in."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from control_plane.ingest.scan_row import COLUMNS, scan_row
from shared.scan_event import ScanEvent


async def test_a_row_has_the_columns_of_the_scans_table_in_table_order(db: asyncpg.Connection[Any]) -> None:
    columns = await db.fetch("SELECT column_name FROM information_schema.columns WHERE table_name = 'scans'"
                             " ORDER BY ordinal_position")
    assert COLUMNS == tuple(row["column_name"] for row in columns)


def test_every_field_of_the_event_is_stored_under_its_own_name() -> None:
    event = ScanEvent("0190a4b2-0000-7000-8000-000000000000", 1_700_000_000_123, "qr_x", "grp_x", "org_x", True,
                      "redirected", "GET", True, "ip", "visitor", "curl/8.5.0", "https://ref.example/",
                      "fr-FR", "FR", {"table": "4"})
    row = scan_row(ScanEvent.decode(event.encode()))
    carried = {f.name for f in fields(ScanEvent)} - {"ts_ms", "marker"}  # ts_ms becomes scanned_at
    assert {name: getattr(row, name) for name in carried} == {name: getattr(event, name) for name in carried}
    assert row.scanned_at == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert (row.is_bot, row.device_type) == (True, "bot")  # enriched from the user agent


def test_what_the_user_agent_says_is_stored_under_its_own_name() -> None:
    event = ScanEvent("0190a4b2-0000-7000-8000-000000000000", 0, "qr_x", None, "org_x", True, "redirected", "GET",
                      True, "ip", "visitor", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X)"
                      " AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 320.0.2.28.108",
                      rule=3, variant=0)
    row = scan_row(event)
    assert {name: getattr(row, name) for name in ("device_type", "os", "browser", "is_bot", "scan_method",
                                                  "scanner_app", "rule", "variant")} == {
        "device_type": "mobile", "os": "iOS", "browser": "Instagram", "is_bot": False, "scan_method": "app_scanner",
        "scanner_app": "Instagram", "rule": 3, "variant": 0}


def test_an_event_missing_a_field_or_with_a_wrong_type_does_not_decode() -> None:
    event = ScanEvent("0190a4b2-0000-7000-8000-000000000000", 0, "qr_x", None, "org_x", True, "redirected", "GET",
                      True, "ip", "visitor").encode()
    for broken in (event.replace(b'"code_id"', b'"code"'), event.replace(b'"ts_ms":0', b'"ts_ms":"0"'),
                   event.replace(b'"properties":{}', b'"properties":{"n":1}'), b"[1, 2]", b"not json"):
        with pytest.raises(ValueError):
            ScanEvent.decode(broken)


def test_fields_a_newer_edge_adds_are_ignored() -> None:
    event = ScanEvent("0190a4b2-0000-7000-8000-000000000000", 0, "qr_x", None, "org_x", True, "redirected", "GET",
                      True, "ip", "visitor")
    assert ScanEvent.decode(event.encode()[:-1] + b',"new_field":1}') == event

"""A row of the `scans` table, made from a scan event by name: what COPY writes and the hourly counts read."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple

from control_plane.ingest.enrich import enrich
from shared.scan_event import ScanEvent


class ScanRow(NamedTuple):
    """The columns of `scans`, in table order (a test holds the two together). A tuple, because asyncpg's
    COPY takes tuples; named, so that nothing reads it by position."""

    scan_id: str
    scanned_at: datetime
    code_id: str
    group_id: str | None
    org_id: str
    livemode: bool
    outcome: str
    method: str
    scan_method: str
    ip_hash: str
    visitor_hash: str
    user_agent: str
    referer: str
    accept_language: str
    country: str | None
    is_bot: bool
    properties: dict[str, str]
    device_type: str
    os: str
    browser: str
    scanner_app: str | None
    rule: int | None
    variant: int | None


COLUMNS = ScanRow._fields


def scan_row(event: ScanEvent) -> ScanRow:
    """The stored row: the event's own fields, its time, and what its user agent says (cached per agent)."""
    agent = enrich(event.user_agent, event.method, event.marker)
    # In field order, not by keyword: a row per scan is the worker's hottest path, and keyword arguments cost
    # three times as much. tests/control_plane/ingest/test_scan_row.py holds every field to its name.
    return _make((
        event.scan_id, datetime.fromtimestamp(event.ts_ms / 1000, UTC), event.code_id, event.group_id, event.org_id,
        event.livemode, event.outcome, event.method, agent.scan_method, event.ip_hash, event.visitor_hash,
        event.user_agent, event.referer, event.accept_language, event.country, agent.is_bot, event.properties,
        agent.device_type, agent.os, agent.browser, agent.scanner_app, event.rule, event.variant))


_make = ScanRow._make

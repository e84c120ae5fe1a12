"""A row of the `scans` table, made from a scan event by name: what COPY writes and the rollups read."""

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
    return ScanRow(
        scan_id=event.scan_id, scanned_at=datetime.fromtimestamp(event.ts_ms / 1000, UTC), code_id=event.code_id,
        group_id=event.group_id, org_id=event.org_id, livemode=event.livemode, outcome=event.outcome,
        method=event.method, scan_method=agent.scan_method, ip_hash=event.ip_hash, visitor_hash=event.visitor_hash,
        user_agent=event.user_agent, referer=event.referer, accept_language=event.accept_language,
        country=event.country, is_bot=agent.is_bot, properties=event.properties, device_type=agent.device_type,
        os=agent.os, browser=agent.browser, scanner_app=agent.scanner_app, rule=event.rule, variant=event.variant)

"""Turning a raw scan event into analytics columns."""

from __future__ import annotations

from shared.scan_event import ScanEvent


def scan_method(event: ScanEvent) -> str:
    """Printed images encode `short_url?qr=1`; a visit without the marker was typed or pasted."""
    return "camera" if event.marker else "manual_entry"


def is_bot(event: ScanEvent) -> bool:
    """HEAD requests come from link checkers and preview fetchers, never from a person scanning."""
    return event.method == "HEAD"

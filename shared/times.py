"""Timestamps as the API and every event write them: RFC 3339, UTC, seconds, with a `Z`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


@overload
def timestamp(value: datetime) -> str: ...
@overload
def timestamp(value: datetime | None) -> str | None: ...
def timestamp(value: datetime | None) -> str | None:
    # isoformat zero-pads the year (strftime's %Y does not on Linux: year 280 → "280").
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z" if value else None

"""Timestamps as the API and every event write them: RFC 3339, UTC, seconds, with a `Z`."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import overload


@overload
def timestamp(value: datetime) -> str: ...
@overload
def timestamp(value: datetime | None) -> str | None: ...
def timestamp(value: datetime | None) -> str | None:
    # isoformat zero-pads the year (strftime's %Y does not on Linux: year 280 → "280").
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z" if value else None


# RFC 3339 §5.6 `date-time`: seconds and an offset are required; `T` and `Z` may be lower case.
RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})")
RFC3339_MESSAGE = 'must be an RFC 3339 date-time with an offset, such as "2026-05-08T10:30:00Z"'


def parse_rfc3339(value: object) -> datetime:
    """An RFC 3339 date-time string as an aware datetime; ValueError for anything else — a number, Unix
    seconds as text, a date alone, no offset — which Python's and pydantic's parsers would each partly take."""
    if not isinstance(value, str) or not RFC3339.fullmatch(value):
        raise ValueError(RFC3339_MESSAGE)
    try:
        parsed = datetime.fromisoformat(value.upper())
        parsed.astimezone(UTC)  # 0001-01-01T00:00:00+01:00 is a valid string for an instant before year 1
    except (ValueError, OverflowError):  # the shape is right but a field, or the instant, is out of range
        raise ValueError(RFC3339_MESSAGE) from None
    return parsed

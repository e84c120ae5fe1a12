"""Validity of a code: `valid_from`, `valid_until`, `max_scans`, `expired_destination` (docs/api.md §3.5 step 1).

The fields are inherited from the group one by one (`null` on the code = the group's value). `max_scans`
always counts the code's own human scans: the ingest worker counts them and marks the code's row once the
limit is reached, so the edge decides from the cached row alone (the mark may lag by the ingest delay).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from shared.rows import Destination

MAX_SCANS_LIMIT = 2_000_000_000  # fits PostgreSQL's integer
MaxScans = Annotated[int, Field(strict=True, ge=1, le=MAX_SCANS_LIMIT)]


def window_error(valid_from: datetime | None, valid_until: datetime | None) -> str | None:
    """The message for `valid_until` when the window is empty, else None."""
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        return "must be later than `valid_from`"
    return None


@dataclass(frozen=True, slots=True)
class Validity:
    """One row's validity fields (None = not set, so inherited), or the effective ones after `inherit`."""

    valid_from: float | None = None  # unix seconds
    valid_until: float | None = None
    max_scans: int | None = None
    expired_destination: Destination | None = None

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> Validity:
        """From the stored form: RFC 3339 strings and a compact destination dict."""
        if not raw:
            return NO_VALIDITY
        expired = raw.get("expired_destination")
        return cls(_seconds(raw.get("valid_from")), _seconds(raw.get("valid_until")), raw.get("max_scans"),
                   Destination(**expired) if expired else None)

    def inherit(self, group: Validity | None) -> Validity:
        if group is None or group is NO_VALIDITY:
            return self
        return Validity(
            self.valid_from if self.valid_from is not None else group.valid_from,
            self.valid_until if self.valid_until is not None else group.valid_until,
            self.max_scans if self.max_scans is not None else group.max_scans,
            self.expired_destination if self.expired_destination is not None else group.expired_destination)

    @property
    def limited(self) -> bool:
        return self.valid_from is not None or self.valid_until is not None or self.max_scans is not None

    def outcome(self, now: float, limit_reached: bool) -> str | None:
        """`scheduled` before the window, `expired` after it or once the limit was reached, else None."""
        if self.valid_from is not None and now < self.valid_from:
            return "scheduled"
        if self.valid_until is not None and now >= self.valid_until:
            return "expired"
        if self.max_scans is not None and limit_reached:
            return "expired"
        return None


NO_VALIDITY = Validity()


def _seconds(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None

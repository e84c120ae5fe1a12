"""Validity windows and scan limits, inherited field by field from the group."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.rows import Destination
from shared.validity import NO_VALIDITY, Validity, window_error


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


WINDOW = Validity.from_json({"valid_from": "2026-06-01T00:00:00Z", "valid_until": "2026-07-01T00:00:00Z"})


def test_before_the_window_is_scheduled_after_it_expired() -> None:
    assert WINDOW.outcome(at("2026-05-31T23:59:59Z"), limit_reached=False) == "scheduled"
    assert WINDOW.outcome(at("2026-06-01T00:00:00Z"), limit_reached=False) is None
    assert WINDOW.outcome(at("2026-06-30T23:59:59Z"), limit_reached=False) is None
    assert WINDOW.outcome(at("2026-07-01T00:00:00Z"), limit_reached=False) == "expired"


def test_a_reached_scan_limit_expires_the_code_only_when_it_has_a_limit() -> None:
    limited = Validity.from_json({"max_scans": 5000})
    assert limited.outcome(at("2026-06-10T00:00:00Z"), limit_reached=True) == "expired"
    assert limited.outcome(at("2026-06-10T00:00:00Z"), limit_reached=False) is None
    assert NO_VALIDITY.outcome(at("2026-06-10T00:00:00Z"), limit_reached=True) is None  # the limit was removed


def test_fields_are_inherited_one_by_one() -> None:
    group = Validity.from_json({"valid_until": "2026-07-01T00:00:00Z", "max_scans": 100,
                                "expired_destination": {"type": "url", "url": "https://example.com/over"}})
    code = Validity.from_json({"max_scans": 10, "valid_from": "2026-06-01T00:00:00Z"})
    effective = code.inherit(group)
    assert effective == Validity(at("2026-06-01T00:00:00Z"), at("2026-07-01T00:00:00Z"), 10,
                                 Destination("url", "https://example.com/over"))
    assert code.inherit(None) == code and NO_VALIDITY.inherit(group) == group
    assert effective.limited and not NO_VALIDITY.limited


def test_an_empty_window_is_refused() -> None:
    start = datetime(2026, 6, 1, tzinfo=UTC)
    assert window_error(start, start) == "must be later than `valid_from`"
    assert window_error(start, None) is None and window_error(None, start) is None

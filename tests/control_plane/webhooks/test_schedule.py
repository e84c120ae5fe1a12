from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from control_plane.webhooks.schedule import MAX_ATTEMPTS, next_attempt_at, retry_delay


def test_retries_span_more_than_24_hours_even_with_the_shortest_jitter() -> None:
    shortest = sum((retry_delay(n, lambda: 0.0) for n in range(1, MAX_ATTEMPTS)), timedelta())
    longest = sum((retry_delay(n, lambda: 0.999999) for n in range(1, MAX_ATTEMPTS)), timedelta())
    assert timedelta(hours=24) < shortest < longest < timedelta(days=3)


def test_delays_grow_then_level_off_within_the_jitter_band() -> None:
    rng = random.Random(7)
    expected = [timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=8), timedelta(minutes=32),
                timedelta(minutes=128)] + [timedelta(hours=8)] * 6
    for attempts_made, base in enumerate(expected, start=1):
        for _ in range(50):
            assert base * 0.8 <= retry_delay(attempts_made, rng.random) <= base * 1.2


def test_the_schedule_ends() -> None:
    now = datetime(2026, 5, 8, tzinfo=UTC)
    assert next_attempt_at(MAX_ATTEMPTS - 1, now) is not None
    assert next_attempt_at(MAX_ATTEMPTS, now) is None

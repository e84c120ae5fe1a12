"""When a failed delivery is tried again, and when an endpoint is given up on.

Delays grow fourfold from 30 s and stop growing at 8 h, each scaled by a random factor in [0.8, 1.2] so
that endpoints coming back after an outage are not hit by every retry at the same instant:
30 s, 2 min, 8 min, 32 min, ~2 h, then 8 h. Twelve attempts span about 51 h; even with the shortest
jitter the last one comes more than 40 h after the first, beyond the promised 24 h.

Each endpoint also has a circuit breaker: after CIRCUIT_AFTER failed attempts in a row nothing is sent
to it for a pause that doubles from 30 s up to 10 min; then one delivery probes it, and one success
closes the circuit. Deliveries that wait behind an open circuit spend none of their attempts.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]
Jitter = Callable[[], float]  # a number in [0, 1)

MAX_ATTEMPTS = 12
FIRST_DELAY = timedelta(seconds=30)
GROWTH = 4
LONGEST_DELAY = timedelta(hours=8)
JITTER = 0.2
# An endpoint whose attempts have all failed for this long is disabled; nothing more is sent to it.
DISABLE_AFTER = timedelta(days=5)
CIRCUIT_AFTER = 5
FIRST_PAUSE = timedelta(seconds=30)
LONGEST_PAUSE = timedelta(minutes=10)
# After a rotation the old secret keeps signing too, so receivers can switch without losing events.
ROTATION_GRACE = timedelta(hours=24)


def system_clock() -> datetime:
    return datetime.now(UTC)


def base_delay(attempts_made: int) -> timedelta:
    """The delay before attempt `attempts_made + 1`, before jitter."""
    growth: int = GROWTH ** max(attempts_made - 1, 0)
    return min(FIRST_DELAY * growth, LONGEST_DELAY)


def retry_delay(attempts_made: int, jitter: Jitter = random.random) -> timedelta:
    return base_delay(attempts_made) * (1 - JITTER + 2 * JITTER * jitter())


def next_attempt_at(attempts_made: int, now: datetime, jitter: Jitter = random.random) -> datetime | None:
    """When to try again after `attempts_made` failures, or None once the schedule is spent."""
    if attempts_made >= MAX_ATTEMPTS:
        return None
    return now + retry_delay(attempts_made, jitter)


def circuit_pause(failures_in_a_row: int, now: datetime, jitter: Jitter = random.random) -> datetime | None:
    """Until when an endpoint gets nothing after `failures_in_a_row` failed attempts; None: circuit closed."""
    if failures_in_a_row < CIRCUIT_AFTER:
        return None
    doublings: int = min(failures_in_a_row - CIRCUIT_AFTER, 16)
    pause: timedelta = min(FIRST_PAUSE * 2**doublings, LONGEST_PAUSE)
    return now + pause * (1 - JITTER + 2 * JITTER * jitter())

"""Token buckets per key (a code, a client address), bounded in memory (docs/rules.md, "Passwords")."""

from __future__ import annotations

import time
from collections import OrderedDict


class KeyedThrottle:
    """`burst` attempts at once per key, refilled at `per_second`; the least recently used keys are
    forgotten past `max_keys` (a forgotten key starts full again, which only ever errs towards allowing)."""

    def __init__(self, burst: int, per_second: float, max_keys: int = 10_000) -> None:
        self.burst = burst
        self.per_second = per_second
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key → (tokens, at)

    def _tokens(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.per_second)

    def allows(self, key: str, now: float | None = None) -> bool:
        """Whether `key` has an attempt left (without spending it)."""
        return self._tokens(key, time.monotonic() if now is None else now) >= 1.0

    def spend(self, key: str, now: float | None = None) -> bool:
        """Spend one attempt of `key`; False (and nothing spent) when none is left."""
        now = time.monotonic() if now is None else now
        tokens = self._tokens(key, now)
        if tokens < 1.0:
            return False
        self._buckets[key] = (tokens - 1.0, now)
        self._buckets.move_to_end(key)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return True

    def refund(self, key: str, now: float | None = None) -> None:
        """Give back an attempt spent on something that turned out fine (a right password)."""
        if key in self._buckets:
            now = time.monotonic() if now is None else now
            self._buckets[key] = (min(float(self.burst), self._tokens(key, now) + 1.0), now)

    def retry_after(self, key: str, now: float | None = None) -> float:
        """Seconds until `key` has an attempt again."""
        tokens = self._tokens(key, time.monotonic() if now is None else now)
        return max(0.0, (1.0 - tokens) / self.per_second)

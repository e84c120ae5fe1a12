"""Whether this edge process currently trusts Redis, and who to tell when that changes.

One failed command marks Redis down, so that requests stop paying for timeouts and retries: lookups go
to PostgreSQL, scans to the journal. Only the invalidation follower marks it up again, after a probe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class RedisLink:
    def __init__(self) -> None:
        self.up = False  # until the invalidation follower has made contact
        self._contacted = False
        self._on_down: list[Callable[[], None]] = []
        self._on_up: list[Callable[[], None]] = []

    def on_down(self, callback: Callable[[], None]) -> None:
        self._on_down.append(callback)

    def on_up(self, callback: Callable[[], None]) -> None:
        self._on_up.append(callback)

    def mark_down(self, reason: BaseException) -> None:
        if not self.up:
            return
        log.warning("Redis unreachable, serving from the local cache and PostgreSQL, journaling scans: %r", reason)
        self.up = False
        for callback in self._on_down:
            callback()

    def mark_up(self) -> None:
        if self.up:
            return
        if self._contacted:
            log.warning("Redis reachable again")
        self.up = self._contacted = True
        for callback in self._on_up:
            callback()

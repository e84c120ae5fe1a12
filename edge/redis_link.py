"""Whether this edge process currently trusts Redis, and who to tell when that changes.

One failed command marks Redis down, so that requests stop paying for timeouts and retries: lookups go
to PostgreSQL, scans to the journal. Only the invalidation follower marks it up again: after a probe when
its own connection broke, and at most once a second while it reads, so that a failure on another connection
alone (the recorder's) does not keep the link down.

Reachable is not enough to read rows from it: a Redis that comes back may hold rows older than
PostgreSQL (writes made while it was away, or a restore from an older file), so after every contact its
rows count only once PostgreSQL said no repair is pending and the cache sync has caught up with that Redis
(`rows_current`, edge/redis_repair.py, docs/freshness.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class RedisLink:
    def __init__(self) -> None:
        self.up = False  # until the invalidation follower has made contact
        self.rows_current = False  # Redis's rows are as new as PostgreSQL's (checked after each contact)
        self.contacts = 0  # how often contact was (re)made: a check started before the last one is void
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
            log.warning("Redis reachable again; reading PostgreSQL until the cache sync has caught up with it")
        self.rows_current = False
        self.contacts += 1
        self.up = self._contacted = True
        for callback in self._on_up:
            callback()

    @property
    def rows_readable(self) -> bool:
        """Rows read from Redis now are as new as PostgreSQL's."""
        return self.up and self.rows_current

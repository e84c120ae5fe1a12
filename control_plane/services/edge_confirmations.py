"""Waiting, after a write, until every live edge process has applied its invalidation (docs/freshness.md).

An edge that does not confirm within the lease is not waited for any longer: by then its own fence keeps
it from answering out of its local cache (it confirmed being caught up before the invalidation existed,
and its cache answers for half a lease after such a confirmation only).
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis
import redis.exceptions

from shared.edge_registry import LAGGING
from shared.keys import EDGE_LEASE, RedisKeys

log = logging.getLogger(__name__)

REDIS_FAILURES = (OSError, TimeoutError, redis.exceptions.RedisError)
FIRST_PAUSE = 0.0005  # seconds between polls at first; an edge usually confirms within a few ms
LONGEST_PAUSE = 0.005


class EdgeConfirmations:
    def __init__(self, redis: aioredis.Redis, keys: RedisKeys, lease: float = EDGE_LEASE) -> None:
        self.keys = keys
        self.lease = lease
        self.waited_out = 0  # writes that answered after the lease, not after every edge confirmed
        self._lagging = redis.register_script(LAGGING)

    async def wait(self, position: str) -> list[str]:
        """Return once every live edge has applied `position`, or the lease is over; returns who did not."""
        deadline = time.monotonic() + self.lease
        pause = FIRST_PAUSE
        while True:
            lagging = await self._lagging_edges(position, deadline)
            remaining = deadline - time.monotonic()
            if not lagging or remaining <= 0:
                break
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 2, LONGEST_PAUSE)
        if lagging:
            self.waited_out += 1
            log.warning("edges %s did not confirm %s within the %.1f s lease; their caches are fenced",
                        lagging, position, self.lease)
        return lagging

    async def _lagging_edges(self, position: str, deadline: float) -> list[str]:
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
                found = await self._lagging(keys=[self.keys.edge_positions, self.keys.edge_leases],
                                            args=[position])
        except REDIS_FAILURES as exc:  # nobody can tell: wait the lease out
            log.warning("cannot read edge confirmations: %r", exc)
            await asyncio.sleep(max(deadline - time.monotonic(), 0.0))
            return ["unknown"]
        return [e.decode() if isinstance(e, bytes) else str(e) for e in found]

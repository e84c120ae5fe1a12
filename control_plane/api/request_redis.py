"""Redis as the API's middleware use it, in front of every /v1 request: a short budget per call and a circuit.

A rate limit or an idempotency claim is worth a fraction of a millisecond, never a stalled API: each call gets
REQUEST_BUDGET and no retries, and after a failure Redis is skipped for OPEN_FOR seconds, so that a paused or
dead Redis costs one request the budget, not every request (docs/api.md, "Rate limits"). The outage is logged
once when it starts and once when Redis answers again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.exceptions

from shared.redis_client import create_redis
from shared.unavailable import STORE_UNAVAILABLE

log = logging.getLogger(__name__)

REQUEST_BUDGET = 0.2  # seconds to connect, and again to get an answer, for one call on the request path
OPEN_FOR = 3.0  # seconds Redis is skipped after a failed call
STORE_ERRORS: tuple[type[Exception], ...] = (redis.exceptions.RedisError, *STORE_UNAVAILABLE)

T = TypeVar("T")


class RedisSkipped(Exception):
    """Redis failed a moment ago, or just now: the caller goes on without it."""


class RequestRedis:
    def __init__(self, url: str) -> None:
        self.client = create_redis(url, socket_timeout=REQUEST_BUDGET, connect_timeout=REQUEST_BUDGET, retries=0)
        self._skip_until = 0.0
        self._down = False

    async def call(self, command: Callable[[], Awaitable[T]]) -> T:
        if time.monotonic() < self._skip_until:
            raise RedisSkipped
        try:
            result = await command()
        except STORE_ERRORS as exc:
            self._skip_until = time.monotonic() + OPEN_FOR
            if not self._down:
                self._down = True
                log.warning("rate limiter unavailable, letting requests through (and answering Idempotency-Key"
                            " requests with 503) until Redis answers again: %r", exc)
            raise RedisSkipped from exc
        if self._down:
            self._down = False
            log.warning("rate limiter and idempotency store available again")
        return result

    async def aclose(self) -> None:
        await self.client.aclose()

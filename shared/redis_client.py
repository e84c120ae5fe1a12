"""Redis clients with explicit timeouts, reconnecting by themselves after an outage."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

SOCKET_TIMEOUT = 5.0


def create_redis(url: str, *, socket_timeout: float = SOCKET_TIMEOUT) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url, socket_timeout=socket_timeout, socket_connect_timeout=2.0, health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
    )

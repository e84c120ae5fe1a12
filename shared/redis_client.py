"""Redis clients with explicit timeouts, reconnecting by themselves after an outage."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

SOCKET_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0
RETRIES = 2  # further attempts of a command after a connection or timeout error


def create_redis(url: str, *, socket_timeout: float = SOCKET_TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT,
                 retries: int = RETRIES) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url, socket_timeout=socket_timeout, socket_connect_timeout=connect_timeout, health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=retries),
    )

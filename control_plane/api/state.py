"""The control plane's wiring: one typed object, built by the lifespan, closed on shutdown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from starlette.requests import HTTPConnection
from starlette.types import Scope

from control_plane.api.request_redis import RequestRedis
from control_plane.services.cache import EdgeCache
from control_plane.services.context import ServiceContext
from shared.keys import RedisKeys
from shared.settings import ControlPlaneSettings


@dataclass(frozen=True, slots=True)
class AppState:
    settings: ControlPlaneSettings
    db: asyncpg.Pool[Any]
    redis: aioredis.Redis
    keys: RedisKeys
    cache: EdgeCache
    request_redis: RequestRedis  # the middleware's: a short budget and a circuit
    rate_limiter: AsyncScript  # on request_redis
    services: ServiceContext


def app_state(connection: HTTPConnection) -> AppState:
    """The state of the app serving this request."""
    return scope_state(connection.scope)


def scope_state(scope: Scope) -> AppState:
    """The same, for raw ASGI middleware."""
    state: AppState = scope["app"].state.control_plane  # set by the lifespan, and nothing else is
    return state

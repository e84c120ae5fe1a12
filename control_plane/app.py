"""The control plane's ASGI app: admin API under /v1, health routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.cache import EdgeCache
from control_plane.http import json_response
from control_plane.problems import exception_handlers
from control_plane.routes import analytics, qr_codes, qr_groups
from shared.database import create_pool
from shared.keys import RedisKeys
from shared.redis_client import create_redis
from shared.settings import ControlPlaneSettings

log = logging.getLogger(__name__)


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    checks = {}
    try:
        await request.app.state.db.fetchval("SELECT 1", timeout=2)
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = f"unreachable: {type(exc).__name__}"
    try:
        await request.app.state.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return json_response({"status": "ready" if ready else "unavailable", "checks": checks}, 200 if ready else 503)


def create_app(settings: ControlPlaneSettings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.db = await create_pool(settings.stores.database_url, min_size=0, max_size=20)
        app.state.redis = create_redis(settings.stores.redis_url)
        keys = RedisKeys(settings.stores.redis_namespace)
        app.state.keys = keys
        app.state.cache = EdgeCache(app.state.redis, keys)
        try:
            yield
        finally:
            await app.state.db.close()
            await app.state.redis.aclose()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *qr_groups.routes,
        *qr_codes.routes,
        *analytics.routes,
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=exception_handlers())


def app_from_env() -> Starlette:
    return create_app(ControlPlaneSettings.from_env())

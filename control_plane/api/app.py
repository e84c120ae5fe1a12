"""The control plane's ASGI app: admin API under /v1, health routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from control_plane.api.body_limit import BodyLimitMiddleware
from control_plane.api.http import json_response
from control_plane.api.metrics import ApiMetrics, MetricsMiddleware
from control_plane.api.middleware import TOKEN_BUCKET, IdempotencyMiddleware, RateLimitMiddleware
from control_plane.api.openapi import build_spec, docs_page
from control_plane.api.problems import exception_handlers
from control_plane.api.request_redis import RequestRedis
from control_plane.api.routes import (
    analytics,
    api_keys,
    domains,
    events,
    exports,
    folders,
    images,
    maps,
    qr_codes,
    qr_groups,
    usage,
    webhook_endpoints,
)
from control_plane.api.state import AppState, app_state
from control_plane.dashboard.routes import dashboard_mount
from control_plane.render.images import read_image_secret, with_image_secret
from control_plane.services.cache import EdgeCache
from control_plane.services.cache_sync import CacheSync, CacheSyncMetrics
from control_plane.services.context import ServiceContext
from shared.database import create_pool
from shared.keys import RedisKeys
from shared.redis_client import create_redis
from shared.settings import ControlPlaneSettings
from shared.unavailable import POSTGRES_TRANSIENT, STORE_UNAVAILABLE

log = logging.getLogger(__name__)
__version__ = "0.1.0"
FIRST_SECRET_READ = 2.0  # seconds the start waits for PostgreSQL before it goes on without the image URL secret


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = app_state(request)
    checks = {}
    try:
        await state.db.fetchval("SELECT 1", timeout=2)
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = f"unreachable: {type(exc).__name__}"
    try:
        await state.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}"
    if state.settings.image_url_secret is None:
        checks["image_url_secret"] = "not read from the database yet"
    ready = all(v == "ok" for v in checks.values())
    return json_response({"status": "ready" if ready else "unavailable", "checks": checks}, 200 if ready else 503)


async def open_state(settings: ControlPlaneSettings) -> AppState:
    """Pools and clients for one app; nothing connects before the lifespan starts. The start waits for PostgreSQL
    FIRST_SECRET_READ at most: the control plane starts while PostgreSQL or Redis is away (docs/operations.md)."""
    db = await create_pool(settings.stores.database_url, min_size=0, max_size=20)
    try:
        settings = await asyncio.wait_for(with_image_secret(settings, db), FIRST_SECRET_READ)
    except (*STORE_UNAVAILABLE, *POSTGRES_TRANSIENT) as exc:
        log.warning("starting without the image URL secret, read once PostgreSQL answers (image and download URLs"
                    " answer 503 until then): %r", exc)
    redis = create_redis(settings.stores.redis_url)
    keys = RedisKeys(settings.stores.redis_namespace)
    cache = EdgeCache(redis, keys)
    request_redis = RequestRedis(settings.stores.redis_url)
    return AppState(settings=settings, db=db, redis=redis, keys=keys, cache=cache, request_redis=request_redis,
                    rate_limiter=request_redis.client.register_script(TOKEN_BUCKET),
                    services=ServiceContext(db=db, cache=cache, settings=settings))


async def load_image_secret(app: Starlette, state: AppState, stop: asyncio.Event) -> None:
    """Hand the app the image-URL secret once PostgreSQL answers; until then what needs it answers 503."""
    settings = await read_image_secret(state.settings, state.db, stop)
    if settings is not None:
        app.state.control_plane = replace(state, settings=settings, services=replace(state.services, settings=settings))


def create_app(settings: ControlPlaneSettings) -> Starlette:
    metrics = ApiMetrics()
    sync_metrics = CacheSyncMetrics(metrics.registry)  # one `/metrics`; registered once, not per lifespan

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state = await open_state(settings)
        app.state.control_plane = state
        stop = asyncio.Event()
        sync = CacheSync(state.db, state.cache, state.keys.namespace, settings.cache_sync_interval, sync_metrics)
        syncing = asyncio.create_task(sync.run(stop)) if settings.cache_sync_interval else None
        loading = (asyncio.create_task(load_image_secret(app, state, stop))
                   if state.settings.image_url_secret is None else None)
        try:
            yield
        finally:
            stop.set()
            if loading is not None:
                await loading
            if syncing is not None:
                await syncing
            await state.db.close()
            await state.redis.aclose()
            await state.request_redis.aclose()

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *qr_groups.routes,
        *qr_codes.routes,
        *maps.routes,
        *folders.routes,
        *domains.routes,
        *api_keys.routes,
        *events.routes,
        *usage.routes,
        *webhook_endpoints.routes,
        *images.routes,
        *analytics.routes,
        *exports.routes,
    ]
    spec = build_spec(routes, version=__version__)

    async def openapi_json(request: Request) -> Response:
        return json_response(spec)

    async def docs(request: Request) -> Response:
        return HTMLResponse(docs_page(spec))

    routes += [Route("/openapi.json", openapi_json, methods=["GET"]), Route("/docs", docs, methods=["GET"]),
               Route("/metrics", metrics.endpoint, methods=["GET"]), dashboard_mount()]
    metrics.learn(routes)
    # Outermost first: metrics count every answer; the rate limiter reads only headers, so it sits outside the
    # body limit and a 413 carries the RateLimit headers too (docs/api.md §1); the body limit holds before
    # authentication, idempotency or a route read anything.
    middleware = [Middleware(MetricsMiddleware, metrics=metrics), Middleware(RateLimitMiddleware),
                  Middleware(BodyLimitMiddleware), Middleware(IdempotencyMiddleware)]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=exception_handlers(), middleware=middleware)


def app_from_env() -> Starlette:
    return create_app(ControlPlaneSettings.from_env())

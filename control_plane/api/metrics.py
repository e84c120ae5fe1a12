"""`/metrics` of the control plane (Prometheus text): requests by route template and status, latency, and the
requests refused at CONTROL_PLANE_MAX_CONNECTIONS (control_plane/api/slow_clients.py).

Labelled by the route's template (`/v1/qr-codes/{code_id}`), never the raw path, so ids cannot blow up the
number of series. One registry per app: tests and benchmarks build several apps in one process.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control_plane.api.slow_clients import OVER_CAPACITY

UNMATCHED = "unmatched"  # no route: 404s and scanners probing paths share one label
# Seconds: from a cached GET (a few ms) to a 10,000-code mint (seconds).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("scanroute_api_requests", "Requests answered, by method, route template and status",
                                ["method", "route", "status"], registry=self.registry)
        self.refused = Counter("scanroute_api_refused", "Requests answered 503 because the process was at "
                               "CONTROL_PLANE_MAX_CONNECTIONS", registry=self.registry)
        self.latency = Histogram("scanroute_api_request_seconds", "Time to answer, by method and route template",
                                 ["method", "route"], buckets=BUCKETS, registry=self.registry)
        # By id(): a path no route under a Mount serves leaves the Mount's app (a Router, or the middleware
        # around it) as the endpoint, and a Router cannot be hashed. The endpoints live as long as the app's
        # routes, so their ids stay theirs.
        self.templates: dict[int, str] = {}

    def learn(self, routes: Sequence[BaseRoute], prefix: str = "") -> None:
        """Which template each endpoint serves (Starlette leaves the endpoint in the request's scope), the
        routes of a Mount (the dashboard's /app) under the Mount's path."""
        for route in routes:
            if isinstance(route, Route):
                self.templates[id(route.endpoint)] = prefix + route.path
            elif isinstance(route, Mount) and route.routes:
                self.learn(route.routes, prefix + route.path)
            elif isinstance(route, Mount):  # an app of its own, such as static files
                self.templates[id(route.app)] = f"{prefix}{route.path}/{{path}}"

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = self.templates.get(id(scope.get("endpoint")), UNMATCHED)
        self.requests.labels(scope["method"], route, str(status)).inc()
        self.latency.labels(scope["method"], route).observe(seconds)

    async def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


async def refuse(send: Send) -> None:
    """uvicorn's own answer past `limit_concurrency`: a 503 that closes the connection."""
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"19"),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": b"Service Unavailable"})


class MetricsMiddleware:
    """Outermost, so that every answer counts, the middleware's own 413s and 429s included."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope.get(OVER_CAPACITY):  # the protocol found the process full: refused before any route runs
            self.metrics.refused.inc()
            return await refuse(send)
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            self.metrics.observe(scope, status, time.perf_counter() - started)

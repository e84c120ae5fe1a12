"""Webhook fixtures: a real local receiver (aiohttp server on 127.0.0.1), a frozen clock, a dispatcher.

The environment allows 127.0.0.1 and localhost, and plain HTTP, as a developer's `.env` would (docs/api.md §0).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiohttp import web

from control_plane.webhooks.delivery import create_session
from control_plane.webhooks.dispatcher import Dispatcher
from shared.database import create_pool
from shared.settings import WebhookSettings
from tests.conftest import bearer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Records every request; answers from a per-path script of status codes, then 200."""

    scheme: str = "http"
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    strays: int = 0  # requests that were no delivery (see `handle`)
    script: dict[str, list[int]] = field(default_factory=dict)
    delay: float = 0.0
    # Paths whose requests hang until `release` is set (at most 10 s, the dispatcher's timeout).
    hold: set[str] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: dict[str, int] = field(default_factory=dict)
    most_in_flight: dict[str, int] = field(default_factory=dict)

    def url(self, path: str = "/hook") -> str:
        return f"{self.scheme}://{self.host}:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def handle(self, request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        if "webhook-id" not in headers:
            # Not a delivery: another test probing a port it picked before this receiver was given it (test_up
            # polls `/healthz` of its stack's ports). Every delivery the dispatcher sends carries the header.
            self.strays += 1
            return web.Response(status=404)
        self.requests.append(Received(request.path, headers, await request.read()))
        path = request.path
        self.in_flight[path] = self.in_flight.get(path, 0) + 1
        self.most_in_flight[path] = max(self.most_in_flight.get(path, 0), self.in_flight[path])
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if path in self.hold:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.release.wait(), 10)
        finally:
            self.in_flight[path] -= 1
        queue = self.script.get(request.path)
        status = queue.pop(0) if queue else 200
        if 300 <= status < 400:
            return web.Response(status=status, headers={"Location": self.url("/redirected")})
        return web.Response(status=status, text=f"receiver answered {status}")


@contextlib.asynccontextmanager
async def serve_receiver(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Receiver]:
    state = Receiver(scheme="https" if ssl_context else "http")
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", state.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    state.port = runner.addresses[0][1]
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as running:
        yield running


class FrozenClock:
    """The dispatcher's `now()`: stands still until a test moves it."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "OUTBOUND_ALLOWED_HOSTS": "127.0.0.1,localhost", "WEBHOOK_ALLOW_HTTP": "true"}


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def webhook_settings(env: dict[str, str]) -> WebhookSettings:
    return WebhookSettings.from_env(env)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    db = await create_pool(database_url, min_size=0, max_size=4)
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
async def dispatcher(webhook_settings: WebhookSettings, pool: asyncpg.Pool[Any],
                     clock: FrozenClock) -> AsyncIterator[Dispatcher]:
    session = create_session(webhook_settings.delivery_timeout)
    try:
        yield Dispatcher(webhook_settings, pool, session, clock=clock, jitter=lambda: 0.5)
    finally:
        await session.close()


@contextlib.asynccontextmanager
async def loops_running(dispatcher: Dispatcher, stop_within: float) -> AsyncIterator[asyncio.Task[None]]:
    """The dispatcher's loops as `scanroute webhooks` runs them, until the block ends: then they are told to stop
    (and must, within `stop_within` seconds) and the dispatcher's HTTP session is closed."""
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, stop_within)
        await dispatcher.session.close()


async def eventually(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def create_endpoint(api: httpx.AsyncClient, key: str, url: str, events: list[str] | None = None,
                          **extra: Any) -> dict[str, Any]:
    response = await api.post("/v1/webhook-endpoints", headers=bearer(key),
                              json={"url": url, "events": events or ["*"], **extra})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def create_group(api: httpx.AsyncClient, key: str, name: str = "Fall run") -> dict[str, Any]:
    response = await api.post("/v1/qr-groups", headers=bearer(key), json={"name": name})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def deliveries(api: httpx.AsyncClient, key: str, endpoint_id: str) -> list[dict[str, Any]]:
    response = await api.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=bearer(key))
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


WEBHOOK_SCOPES = ("qr:read", "qr:write", "webhooks:read", "webhooks:write")

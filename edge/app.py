"""The edge ASGI app. `/{slug}` is raw ASGI (the hot path); Starlette serves only the operations routes."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import redis.exceptions
import uuid_utils
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edge.lookup import RowLookup
from edge.pages import load_pages
from edge.recorder import ScanRecorder
from shared.database import create_pool
from shared.geo import CountryLookup
from shared.keys import RedisKeys
from shared.params import SCAN_MARKER
from shared.redis_client import create_redis
from shared.resolve import resolve
from shared.scan_event import ScanEvent
from shared.settings import EdgeSettings

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
HTML = [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store")]
UNAVAILABLE_EXCEPTIONS = (OSError, redis.exceptions.RedisError, TimeoutError)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _has_marker(query: bytes) -> bool:
    return any(part.split(b"=", 1)[0] == SCAN_MARKER.encode() for part in query.split(b"&"))


class EdgeApp:
    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        self.keys = RedisKeys(settings.stores.redis_namespace)
        self.pages = load_pages()
        self.secret = settings.scan_hash_secret.encode()
        self.ops = Starlette(routes=[Route("/healthz", self.healthz), Route("/readyz", self.readyz)])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["path"] in OPS_PATHS:
            await self.ops(scope, receive, send)
        else:
            await self.scan(scope, send)

    async def scan(self, scope: Scope, send: Send) -> None:
        method = scope["method"]
        slug = scope["path"][1:].removesuffix("/")
        if method not in ("GET", "HEAD"):
            return await self.respond(send, 405, [(b"allow", b"GET, HEAD"), *HTML], b"", method)
        if not slug or "/" in slug:
            return await self.page(send, 404, "unknown", method)
        domain = _header(scope, b"host").lower().rstrip(".")
        try:
            code = await self.lookup.code(domain, slug)
            group = await self.lookup.group(code.group_id) if code and code.group_id else None
        except UNAVAILABLE_EXCEPTIONS as exc:
            log.warning("cannot resolve %s/%s: %r", domain, slug, exc)
            return await self.page(send, 503, "unavailable", method, [(b"retry-after", b"2")])
        if code is None:
            return await self.page(send, 404, "unknown", method)
        resolution = resolve(code, group, self.settings.templates)
        query: bytes = scope["query_string"]
        scan_id = uuid_utils.uuid7()
        client = scope.get("client")
        ip = client[0] if client else ""
        user_agent = _header(scope, b"user-agent")
        event = ScanEvent(
            scan_id=str(scan_id), ts_ms=scan_id.timestamp, code_id=code.id, group_id=code.group_id,
            org_id=code.org_id, livemode=code.livemode, outcome=resolution.outcome, method=method,
            marker=_has_marker(query), ip_hash=self._hash(ip), visitor_hash=self._hash(f"{ip}\n{user_agent}"),
            user_agent=user_agent[:512], referer=_header(scope, b"referer")[:1024],
            accept_language=_header(scope, b"accept-language")[:256],
            country=self._country(scope, ip), properties=resolution.properties,
        )
        try:
            await self.recorder.record(event.encode())
        except UNAVAILABLE_EXCEPTIONS as exc:
            log.warning("cannot record scan %s: %r", event.scan_id, exc)
            return await self.page(send, 503, "unavailable", method, [(b"retry-after", b"2")])
        if resolution.location is None:
            return await self.page(send, resolution.http_status, resolution.outcome, method)
        location = resolution.location.render(query).encode("ascii")
        await self.respond(send, 302, [(b"location", location), (b"cache-control", b"private, no-store"),
                                       (b"content-type", b"text/plain")], b"", method)

    def _hash(self, value: str) -> str:
        return hmac.new(self.secret, value.encode(), hashlib.sha256).hexdigest()[:32]

    def _country(self, scope: Scope, ip: str) -> str | None:
        name = self.settings.trusted_country_header
        value = _header(scope, name.encode()).strip().upper() if name else ""
        if len(value) == 2 and value.isalpha():
            return value
        return self.geo.country(ip) if self.geo and ip else None

    async def page(self, send: Send, status: int, outcome: str, method: str,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
        await self.respond(send, status, [*HTML, *(extra or [])], self.pages[outcome], method)

    @staticmethod
    async def respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                      method: str) -> None:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("edge start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        self.db = await create_pool(self.settings.stores.database_url, min_size=0, max_size=4)
        self.redis = create_redis(self.settings.stores.redis_url, socket_timeout=2.0)
        self.lookup = RowLookup(self.redis, self.db, self.keys)
        self.recorder = ScanRecorder(self.redis, self.keys.scans)
        self.geo = CountryLookup(self.settings.geoip_db) if self.settings.geoip_db else None

    async def shutdown(self) -> None:
        await self.recorder.drain()
        if self.geo:
            self.geo.close()
        await self.redis.aclose()
        await self.db.close()

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        try:
            await self.redis.ping()
        except UNAVAILABLE_EXCEPTIONS as exc:
            return JSONResponse({"status": "unavailable", "redis": repr(exc)}, 503)
        return JSONResponse({"status": "ready"})


def app_from_env() -> EdgeApp:
    return EdgeApp(EdgeSettings.from_env())

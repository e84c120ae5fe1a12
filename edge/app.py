"""The edge ASGI app. `/{slug}` is raw ASGI (the hot path); Starlette serves only the operations routes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import secrets
import socket
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import asyncpg
import redis.exceptions
import uuid_utils
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edge.invalidations import InvalidationFollower
from edge.journal import ScanJournal
from edge.local_cache import Fence, LocalCache, open_fence
from edge.lookup import CachedCode, RowLookup
from edge.metrics import EdgeMetrics
from edge.pages import load_pages
from edge.recorder import ScanRecorder
from edge.redis_link import RedisLink
from edge.redis_repair import RedisRepairWatch
from shared.database import create_pool
from shared.geo import CountryLookup
from shared.keys import RedisKeys
from shared.params import SCAN_MARKER
from shared.redis_client import create_redis
from shared.resolve import Resolution
from shared.rows import CodeRow, GroupRow
from shared.scan_event import ScanEvent
from shared.settings import EdgeSettings

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
HTML = [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store")]
UNAVAILABLE_EXCEPTIONS = (OSError, redis.exceptions.RedisError, TimeoutError, asyncpg.PostgresError,
                          asyncpg.InterfaceError)
RETRY = [(b"retry-after", b"2")]
START_WAIT = 5.0  # seconds to wait for Redis at start-up before serving without it
# How long the invalidation follower's thread may wait for the GIL while the event loop is busy (Python's
# default is 5 ms, paid several times per message): a shorter wait keeps the follower's lag, and so the
# writes' latency, small under load (BENCHMARKS.md). Only the follower ever waits for it.
GIL_SWITCH_INTERVAL = 0.001


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return dict(scope["headers"])  # a repeated header keeps its last value


_MARKER = re.compile(rb"(?:^|&)" + SCAN_MARKER.encode() + rb"(?:[=&]|$)")


class EdgeApp:
    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        self.keys = RedisKeys(settings.stores.redis_namespace)
        self.pages = load_pages()
        self.hash_key = hashlib.sha256(settings.scan_hash_secret.encode()).digest()  # BLAKE2b takes ≤ 64 bytes
        self.link = RedisLink()
        self.edge_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        # Closed until the invalidation follower has caught up; always open without read-your-writes.
        self.fence = Fence() if settings.read_your_writes else open_fence()
        self.codes: LocalCache[CachedCode] = LocalCache(settings.cache_entries, settings.cache_ttl,
                                                        settings.negative_ttl, self.fence)
        self.groups: LocalCache[GroupRow] = LocalCache(settings.cache_entries, settings.cache_ttl,
                                                       settings.negative_ttl, self.fence)
        self.journal = ScanJournal(settings.journal_dir)
        self.follower = InvalidationFollower(settings.stores.redis_url, self.keys, [self.codes, self.groups],
                                             self.fence, self.edge_id, self._heard_from_redis,
                                             confirm=settings.read_your_writes)
        self.metrics = EdgeMetrics({"code": self.codes, "group": self.groups}, self.journal, self.link,
                                   self.follower)
        self.ops = Starlette(routes=[Route("/healthz", self.healthz), Route("/readyz", self.readyz),
                                     Route("/metrics", self.prometheus)])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["path"] in OPS_PATHS:
            await self.ops(scope, receive, send)
        else:
            started = time.perf_counter()
            outcome = await self.scan(scope, send)
            self.metrics.answered(outcome, time.perf_counter() - started)

    async def scan(self, scope: Scope, send: Send) -> str:
        method = scope["method"]
        slug = scope["path"][1:].removesuffix("/")
        if method not in ("GET", "HEAD"):
            await self.respond(send, 405, [(b"allow", b"GET, HEAD"), *HTML], b"", method)
            return "not_allowed"
        if not slug or "/" in slug:
            return await self.page(send, 404, "unknown", method)
        headers = _headers(scope)
        domain = headers.get(b"host", b"").decode("latin-1").lower().rstrip(".")
        try:
            found = await self.lookup.find(domain, slug)
        except UNAVAILABLE_EXCEPTIONS:  # counted as "unavailable" in /metrics; no log line per request
            return await self.page(send, 503, "unavailable", method, RETRY)
        if found is None:
            return await self.page(send, 404, "unknown", method)
        code, resolution = found
        try:
            await self.recorder.record(self._event(scope, headers, code, resolution))
        except Exception:  # neither Redis nor the journal took it (logged per batch): never answer unrecorded
            return await self.page(send, 503, "unavailable", method, RETRY)
        if resolution.location is None:
            return await self.page(send, resolution.http_status, resolution.outcome, method)
        location = resolution.location.render(scope["query_string"]).encode("ascii")
        await self.respond(send, 302, [(b"location", location), (b"cache-control", b"private, no-store"),
                                       (b"content-type", b"text/plain")], b"", method)
        return "redirected"

    def _event(self, scope: Scope, headers: dict[bytes, bytes], code: CodeRow, resolution: Resolution) -> bytes:
        scan_id = uuid_utils.uuid7()
        client = scope.get("client")
        ip = client[0] if client else ""
        user_agent = headers.get(b"user-agent", b"").decode("latin-1")
        return ScanEvent(
            scan_id=str(scan_id), ts_ms=scan_id.timestamp, code_id=code.id, group_id=code.group_id,
            org_id=code.org_id, livemode=code.livemode, outcome=resolution.outcome, method=scope["method"],
            marker=_MARKER.search(scope["query_string"]) is not None, ip_hash=self._hash(ip),
            visitor_hash=self._hash(f"{ip}\n{user_agent}"), user_agent=user_agent[:512],
            referer=headers.get(b"referer", b"")[:1024].decode("latin-1"),
            accept_language=headers.get(b"accept-language", b"")[:256].decode("latin-1"),
            country=self._country(headers, ip), properties=resolution.properties,
        ).encode()

    def _hash(self, value: str) -> str:
        # Keyed BLAKE2b is a MAC in one call, and cheaper per scan than HMAC-SHA256.
        return hashlib.blake2b(value.encode(), key=self.hash_key, digest_size=16).hexdigest()

    def _country(self, headers: dict[bytes, bytes], ip: str) -> str | None:
        """A trusted CDN header first; else the GeoIP database, looked up here since IPs never leave the edge."""
        name = self.settings.trusted_country_header
        value = headers.get(name.encode(), b"").decode("latin-1").strip().upper() if name else ""
        if len(value) == 2 and value.isalpha():
            return value
        return self.geo.country(ip) if self.geo and ip else None

    async def page(self, send: Send, status: int, outcome: str, method: str,
                   extra: list[tuple[bytes, bytes]] | None = None) -> str:
        await self.respond(send, status, [*HTML, *(extra or [])], self.pages[outcome], method)
        return outcome

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
        self.journal.open()
        self.geo = CountryLookup(self.settings.geoip_db) if self.settings.geoip_db else None
        self.db = await create_pool(self.settings.stores.database_url, min_size=0, max_size=4)
        self.redis = create_redis(self.settings.stores.redis_url, socket_timeout=2.0)
        self.lookup = RowLookup(self.redis, self.db, self.keys, self.link, self.codes, self.groups,
                                self.settings.templates)
        self.recorder = ScanRecorder(self.redis, self.keys.scans, self.journal, self.link,
                                     self.metrics.batch_size.observe)
        self.link.on_down(self._forget_freshness)
        self.loop = asyncio.get_running_loop()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        self.follower.start()
        # Serve only once following the invalidations, or after a bounded wait if Redis is down
        # (then lookups go to PostgreSQL and scans to the journal until it returns).
        await asyncio.to_thread(self.follower.ready.wait, START_WAIT)
        self.repair = RedisRepairWatch(self.db, self.link)
        await self.repair.check()
        self.repair_watch = asyncio.create_task(self.repair.run())
        self.recorder.replay_soon()

    def _heard_from_redis(self, failure: BaseException | None) -> None:
        """Called by the follower's thread: hand the news to the event loop, which owns the link."""
        with contextlib.suppress(RuntimeError):  # the loop is closing: nobody needs the news
            if failure is None:
                self.loop.call_soon_threadsafe(self.link.mark_up)
            else:
                self.loop.call_soon_threadsafe(self.link.mark_down, failure)

    def _forget_freshness(self) -> None:
        self.codes.clear()
        self.groups.clear()

    async def shutdown(self) -> None:
        self.repair_watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.repair_watch
        await asyncio.to_thread(self.follower.stop)
        await self.recorder.drain()
        self.journal.close()
        if self.geo:
            self.geo.close()
        await self.redis.aclose()
        await self.db.close()

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        body = {"redis": "up" if self.link.up else "down", "journal_depth": self.journal.depth,
                "freshness": self.metrics.freshness()}
        if not self.link.up:
            return JSONResponse({"status": "degraded", **body}, 503)
        return JSONResponse({"status": "ready", **body})

    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def app_from_env() -> EdgeApp:
    return EdgeApp(EdgeSettings.from_env())

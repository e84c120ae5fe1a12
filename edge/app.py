"""The edge ASGI app. `/{slug}` is raw ASGI (the hot path); Starlette serves only the operations routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import asyncpg
import redis.exceptions
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edge import responses
from edge.client_address import unmapped
from edge.code_filter import CodeFilter
from edge.heap import FrozenHeap
from edge.invalidations import InvalidationFollower
from edge.journal import ScanJournal
from edge.local_cache import Fence, LocalCache, open_fence
from edge.lookup import Answer, CachedCode, PreparedScan, RowLookup, Unresolvable, code_weight, group_weight
from edge.metrics import EdgeMetrics
from edge.pages import load_pages
from edge.password_form import BodyTooLarge, password_from_form, read_form
from edge.protocol import MAX_BODY
from edge.recorder import ScanRecorder
from edge.redis_link import RedisLink
from edge.redis_repair import RedisRepairWatch
from edge.scan_path import ScanPath
from edge.scan_stream import DirectRedis, ScanStream
from shared.database import create_pool
from shared.geo import CountryLookup
from shared.keys import RedisKeys, cache_sync_cursor
from shared.passwords import PasswordChecks
from shared.redis_client import create_redis
from shared.resolve import Resolution
from shared.rows import CodeRow, GroupRow
from shared.scan_plan import PAGE_STATUS, Decision
from shared.settings import EdgeSettings
from shared.visitor import Facts

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
HTML = [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store")]
UNAVAILABLE_EXCEPTIONS = (OSError, redis.exceptions.RedisError, TimeoutError, asyncpg.PostgresError,
                          asyncpg.InterfaceError, Unresolvable)
RETRY = [(b"retry-after", b"2")]
# the protocol server's 413 (edge/responses.py `error`), and the connection closes after it
TOO_LARGE = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
# pages of docs/rules.md, by answer (the others take the status of their outcome, shared.resolve.HTTP_STATUS)
ANSWER_STATUS = {**PAGE_STATUS, "password_throttled": 429}
START_WAIT = 5.0  # seconds to wait for Redis at start-up before serving without it
SCAN_STREAM_TIMEOUT = 2.0  # seconds for a batch of scans to be acknowledged (the other Redis commands' too)
# How long the invalidation follower's thread may wait for the GIL while the event loop is busy (Python's
# default is 5 ms, paid several times per message): a shorter wait keeps the follower's lag, and so the
# writes' latency, small under load (BENCHMARKS.md). Only the follower ever waits for it.
GIL_SWITCH_INTERVAL = 0.001


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return dict(scope["headers"])  # a repeated header keeps its last value


def _carries_body(headers: dict[bytes, bytes]) -> bool:
    """Whether a request has a body to read (RFC 9112 §6.3: only these two headers announce one). A request
    without one — a scan's GET — reads nothing: no await."""
    return b"content-length" in headers or b"transfer-encoding" in headers


class EdgeApp:
    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        self.keys = RedisKeys(settings.stores.redis_namespace)
        self.pages = load_pages()
        self.link = RedisLink()
        self.edge_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        # Closed until the invalidation follower has caught up; always open without read-your-writes.
        self.fence = Fence() if settings.read_your_writes else open_fence()
        self.codes: LocalCache[CachedCode] = LocalCache(settings.cache_entries, settings.cache_ttl,
                                                        settings.negative_ttl, self.fence, settings.cache_bytes,
                                                        code_weight)
        self.groups: LocalCache[GroupRow] = LocalCache(settings.cache_entries, settings.cache_ttl,
                                                       settings.negative_ttl, self.fence, settings.cache_bytes,
                                                       group_weight)
        self.journal = ScanJournal(settings.journal_dir, settings.journal_bytes, settings.journal_min_free)
        self.passwords = PasswordChecks()
        self.heap = FrozenHeap()
        self.clock: Callable[[], float] = time.time  # rules and validity read the time here (tests freeze it)
        self.code_filter = CodeFilter(self.keys.code_filter, self.link, self.fence)
        self.follower = InvalidationFollower(settings.stores.redis_url, self.keys, [self.codes, self.groups],
                                             self.fence, self.edge_id, self._heard_from_redis,
                                             confirm=settings.read_your_writes, code_filter=self.code_filter)
        self.metrics = EdgeMetrics({"code": self.codes, "group": self.groups}, self.journal, self.link,
                                   self.follower, self.code_filter)
        self.ops = Starlette(routes=[Route("/healthz", self.healthz), Route("/readyz", self.readyz),
                                     Route("/metrics", self.prometheus)])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["path"] in OPS_PATHS:
            if _carries_body(_headers(scope)) and await self.read_body(receive, send, scope["method"]) is None:
                return  # refused (413), or the client went away
            if scope["path"] != "/healthz" and not self._operator(scope):
                await self.page(send, 404, "unknown", scope["method"])  # as any unknown slug
            else:
                await self.ops(scope, receive, send)
        else:
            started = time.perf_counter()
            outcome = await self.scan(scope, receive, send)
            if outcome is not None:
                self.metrics.answered(outcome, time.perf_counter() - started)

    async def scan(self, scope: Scope, receive: Receive, send: Send) -> str | None:
        """Answers a scan; its outcome, None if the client went away before its request's end (unanswered)."""
        method = scope["method"]
        headers = _headers(scope)
        form = b""
        if b"content-length" in headers or b"transfer-encoding" in headers:  # `_carries_body`, inlined
            read = await self.read_body(receive, send, method)
            if read is None:
                return None
            form = read
        if method not in ("GET", "HEAD", "POST"):  # POST sends a password (docs/rules.md)
            return await self._not_allowed(send, method)
        target = self.scans.target(scope["path"], headers.get(b"host", b""))
        if target is None:
            return await self.page(send, 404, "unknown", method)
        try:
            found = await self.lookup.find(target[0], target[1])
        except UNAVAILABLE_EXCEPTIONS:  # counted as "unavailable" in /metrics; no log line per request
            return await self.page(send, 503, "unavailable", method, RETRY)
        if found is None:
            return await self.page(send, 404, "unknown", method)
        resolution = found.resolution
        if method == "POST" and not self.takes_password(resolution):
            return await self._not_allowed(send, method)  # only a password form posts to a code
        query, peer = scope["query_string"], self._peer(scope)
        ip = self._client_ip(scope, peer)
        facts = self.scans.facts(headers, ip, peer)
        decision, page, extra = self.decide(method, found, facts, query, ip) or \
            await self.check_password(found.code, resolution, facts, query, ip, password_from_form(form))
        try:
            await self.recorder.record(self.scans.event(method, query, headers, ip, facts, found.event, decision))
        except Exception:  # neither Redis nor the journal took it (logged per batch): never answer unrecorded
            return await self.page(send, 503, "unavailable", method, RETRY)
        if decision.location is None:
            return await self.page(send, ANSWER_STATUS.get(page) or resolution.http_status, page, method, extra)
        location = decision.location.render_bytes(query)
        await self.respond(send, 302, [(b"location", location), (b"cache-control", b"private, no-store"),
                                       (b"content-type", b"text/plain")], b"", method)
        return "redirected"

    async def read_body(self, receive: Receive, send: Send, method: str) -> bytes | None:
        """A request's body, read to its end before anything else whatever the method and path, as the protocol
        server reads every body (docs/edge.md, "bodies"): its first FORM_LIMIT + 1 bytes (a password form), the
        rest discarded. None when nothing more is to be answered: past MAX_BODY it answered 413 and the
        connection closes — neither a scan nor a password attempt, counted as the protocol server counts its
        refusals — or the client went away before its body's end. A body not all sent within EDGE_HEADER_TIMEOUT
        is answered 408 and the connection closes: the protocol server closes a request not complete by then,
        and uvicorn has no limit of its own on the wait."""
        try:
            async with asyncio.timeout(self.settings.header_timeout):
                return await read_form(receive, MAX_BODY)
        except BodyTooLarge:
            status = 413
        except TimeoutError:
            status = 408
        await self.respond(send, status, TOO_LARGE, responses.error(status).body, method)
        self.metrics.answered("malformed", 0.0)  # edge/scan_handler.py `rejected`
        return None

    def _client_ip(self, scope: Scope, peer: str) -> str:
        if not self.settings.trusted_proxies:
            return peer
        return self.scans.client_address.of(peer, self._forwarded(scope))

    def _operator(self, scope: Scope) -> bool:
        return self.scans.client_address.operator(self._peer(scope), self._forwarded(scope) or None,
                                                  self.settings.ops_from)

    @staticmethod
    def _peer(scope: Scope) -> str:
        client = scope.get("client")
        return unmapped(str(client[0])) if client else ""  # an IPv4 client of a `[::]` socket is an IPv4 client

    @staticmethod
    def _forwarded(scope: Scope) -> bytes:
        """Every X-Forwarded-For line of the request, joined into one list."""
        return b",".join(value for name, value in scope["headers"] if name == b"x-forwarded-for")

    async def _not_allowed(self, send: Send, method: str) -> str:
        await self.respond(send, 405, [(b"allow", b"GET, HEAD"), *HTML], b"", method)
        return "not_allowed"

    @staticmethod
    def takes_password(resolution: Resolution) -> bool:
        return resolution.plan is not None and resolution.plan.password_hash is not None

    def decide(self, method: str, scan: PreparedScan, facts: Facts, query: bytes, ip: str) -> Answer | None:
        """Validity, password, rules and split (docs/rules.md), without I/O, for the scan's facts, query and
        client address: the decision, the page to answer with when it does not redirect, and extra headers; None
        when a posted password must be checked."""
        if scan.decided is not None:  # nothing to decide: prepared with the code
            return scan.decided
        resolution = scan.resolution
        plan, default = resolution.plan, resolution.location
        if plan is None or default is None:
            return Decision(resolution.outcome, default), resolution.outcome, []
        if plan.route is not None:  # rules and split only: no validity, no password to check
            return plan.answers[plan.route(facts, query, ip, self.clock())]
        now = self.clock()
        if method != "POST" or plan.password_hash is None or plan.expiry(now) is not None:
            decision = plan.decide(facts, query, ip, now)
            return decision, decision.outcome, ()
        return None

    async def check_password(self, code: CodeRow, resolution: Resolution, facts: Facts, query: bytes, ip: str,
                             password: str) -> tuple[Decision, str, list[tuple[bytes, bytes]]]:
        """The answer to a posted password (off the event loop, throttled: shared.passwords)."""
        plan, default = resolution.plan, resolution.location
        assert plan is not None and plan.password_hash is not None and default is not None
        verdict = await self.passwords.check(code.id, ip, plan.password_hash, password)
        if verdict.result == "right":
            decision = plan.decide(facts, query, ip, self.clock(), unlocked=True)  # recorded as a scan of its own
            return decision, decision.outcome, []
        if verdict.result == "wrong":
            return Decision("password_failed", None), "password_failed", []
        retry = str(max(1, math.ceil(verdict.retry_after))).encode()
        return Decision("password_failed", None), "password_throttled", [(b"retry-after", retry)]

    async def page(self, send: Send, status: int, outcome: str, method: str,
                   extra: Sequence[tuple[bytes, bytes]] | None = None) -> str:
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
        self.scans = ScanPath(self.settings, self.geo, self.keys)
        self.db = await create_pool(self.settings.stores.database_url, min_size=0, max_size=4)
        self.redis = create_redis(self.settings.stores.redis_url, socket_timeout=2.0)
        self.row_reader = DirectRedis(self.settings.stores.redis_url, SCAN_STREAM_TIMEOUT, self.redis)
        self.lookup = RowLookup(self.redis, self.db, self.keys, self.link, self.codes, self.groups,
                                self.settings.templates, self.code_filter, self.row_reader)
        self.scan_stream = ScanStream(self.settings.stores.redis_url, SCAN_STREAM_TIMEOUT, self.redis)
        self.recorder = ScanRecorder(self.redis, self.keys.scans, self.journal, self.link, self.scan_stream,
                                     self.metrics.batch_size.observe, self.settings.scan_stream_entries,
                                     self.settings.redis_memory_share)
        self.metrics.recorder = self.recorder
        self.metrics.heap = self.heap
        self.link.on_down(self._forget_freshness)
        self.loop = asyncio.get_running_loop()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        self.follower.start()
        # Serve only once following the invalidations, or after a bounded wait if Redis is down
        # (then lookups go to PostgreSQL and scans to the journal until it returns).
        await asyncio.to_thread(self.follower.ready.wait, START_WAIT)
        self.repair = RedisRepairWatch(self.db, self.link, self.redis,
                                       cache_sync_cursor(self.settings.stores.redis_namespace), self.code_filter)
        await self.repair.check()
        self.repair_watch = asyncio.create_task(self.repair.run())
        self.memory_watch = asyncio.create_task(self.recorder.watch_memory())
        self.recorder.replay_soon()
        # What start-up made (modules, settings, the filter's copy, pools) lives as long as the process, and so do
        # most cached rows: out of the collector's generations, so that a full collection traverses only what
        # came after (edge/heap.py). Over all of start-up's, one stopped the process for ~24 ms under load; now
        # 0.6 ms (BENCHMARKS.md, 2026-12-01 "p99").
        self.heap.install()
        self.heap_watch = asyncio.create_task(self.heap.watch())

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
        await _cancelled(self.heap_watch)
        self.heap.uninstall()
        self.repair.stop()  # and cancelled until it has ended: see RedisRepairWatch.run, _cancelled
        await _cancelled(self.repair_watch)
        self.recorder.stop_watching()
        await self.memory_watch
        await asyncio.to_thread(self.follower.stop)
        await self.recorder.drain()
        self.scan_stream.close()
        self.row_reader.close()
        self.journal.close()
        self.passwords.close()
        if self.geo:
            self.geo.close()
        await self.redis.aclose()
        await self.db.close()

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        status, body = self.readiness()
        return JSONResponse(body, status)

    def readiness(self) -> tuple[int, dict[str, object]]:
        shedding = self.recorder.shedding
        body = {"redis": "up" if self.link.up else "down", "journal_depth": self.journal.depth,
                "journal_bytes": self.journal.size, "shedding": shedding, "freshness": self.metrics.freshness(),
                "code_filter": self.metrics.code_filter_state()}
        if not self.link.up or shedding:
            return 503, {"status": "degraded", **body}
        return 200, {"status": "ready", **body}

    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def app_from_env() -> EdgeApp:
    return EdgeApp(EdgeSettings.from_env())


async def _cancelled(task: asyncio.Task[None]) -> None:
    """Cancel `task` until it has ended. One cancellation can be lost when it lands just as asyncpg or redis-py
    finishes waiting for a reply (Python 3.11's `wait_for`), and a looping task then goes on for ever: an edge
    told to stop right after starting once hung in its shutdown that way."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("%s ended with %r", task.get_name(), exc)

"""The protocol server's answers: `GET|HEAD /{slug}` and the operations routes.

A scan is answered without a task: the event joins the recorder's next batch, and the batch's
acknowledgement callback fills the connection's slot with the pre-assembled 302. A cache miss joins the
next batch read of missing rows (`RowLookup.load`, one MGET for the misses of a loop turn) and goes on from
its callback; the ASGI app's path awaits the same batches (`RowLookup.find`), so both servers answer every
scan the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING
from urllib.parse import unquote

import httptools
from prometheus_client import CONTENT_TYPE_LATEST

from edge import responses
from edge.app import ANSWER_STATUS, UNAVAILABLE_EXCEPTIONS, EdgeApp
from edge.local_cache import Miss
from edge.lookup import Answer, PreparedScan
from edge.password_form import password_from_form
from shared.resolve import HTTP_STATUS
from shared.visitor import Facts

if TYPE_CHECKING:
    from edge.protocol import HttpConnection, Slot
    from edge.server import EdgeServer

log = logging.getLogger(__name__)

PAGE_STATUS = {**HTTP_STATUS, **ANSWER_STATUS, "unknown": 404, "unavailable": 503}
GET, HEAD, POST = b"GET", b"HEAD", b"POST"
FORWARDED_FOR = b"x-forwarded-for"  # its lines joined into one list by the connection
METHODS = {GET: "GET", HEAD: "HEAD", POST: "POST"}


class ScanHandler:
    def __init__(self, app: EdgeApp, server: EdgeServer) -> None:
        self.app = app
        self.server = server  # its `date`: the Date header's value, renewed by the server's tick
        self.pages = responses.pages(app.pages, PAGE_STATUS)
        self.not_allowed = responses.Fixed(405, responses.ALLOW + responses.HTML, b"")
        self.tasks: set[asyncio.Task[None]] = set()  # misses in flight (kept referenced until done)
        self.scans, self.lookup, self.recorder, self.metrics = app.scans, app.lookup, app.recorder, app.metrics

    def rejected(self, status: int) -> None:
        self.app.metrics.answered("malformed", 0.0)

    def failed(self, conn: HttpConnection, slot: Slot) -> None:
        """Answering a request raised (a bug): logged, and answered 500 as an ASGI server does, after the answers
        before it; nothing more is read, and the connection closes. A cache miss fails in a later callback, when
        requests pipelined behind it may have been read — and a cache hit among them recorded: those are
        answered before the connection closes, since a scan is never recorded without its answer."""
        log.exception("answering a request failed")
        conn.done = True  # the connection closes once its last pending answer is written (`_flush`)
        last = not conn.slots or conn.slots[-1] is slot
        slot.close = last
        conn.fill(slot, responses.error(500).encode(self.server.date,
                                                    responses.CLOSE if last else responses.KEEP_ALIVE))

    def handle(self, conn: HttpConnection, slot: Slot, method: bytes, url: bytes, headers: dict[bytes, bytes],
               body: bytes) -> None:
        started = time.perf_counter()
        connection = responses.CLOSE if slot.close else responses.KEEP_ALIVE
        head_only = method == HEAD
        if url.startswith(b"/"):
            # A fragment is the client's own, cut as uvicorn (the ASGI app) and `_absolute` cut it: `find`, since
            # bytes' `in` first tries its operand as an int (edge/scan_path.py).
            fragment = url.find(b"#")
            path, _, query = (url if fragment < 0 else url[:fragment]).partition(b"?")
        else:
            path, _, query = _absolute(url)
        path_text = path.decode("latin-1")
        if "%" in path_text:
            path_text = unquote(path_text)
        if path_text in OPS:
            forwarded = headers.get(FORWARDED_FOR)
            return conn.fill(slot, self._operations(path_text, method, connection, conn.peer, forwarded))
        if method != GET and not head_only and method != POST:  # POST sends a password (docs/rules.md)
            return self._not_allowed(conn, slot, connection, started)
        target = self.scans.target(path_text, headers.get(b"host", b""))
        if target is None:
            return self._page(conn, slot, "unknown", connection, head_only, started)
        ip = self.scans.client_address.of(conn.peer, headers[FORWARDED_FOR]) if FORWARDED_FOR in headers else conn.peer
        request = _Request(self, conn, slot, METHODS[method], query, headers, ip, connection, started, body)
        found = self.lookup.find_cached(*target)
        if isinstance(found, PreparedScan):
            self._answer(request, found)
        elif isinstance(found, Miss):
            self.lookup.load(*target, request.found)
        else:  # unknown, or a cached code whose rows cannot be resolved
            self.found(request, found)

    def found(self, request: _Request, found: PreparedScan | None | Exception) -> None:
        """What the lookup found: a missed code's rows once read (RowLookup.load), and the scan goes on as a cache
        hit would have; or, from either path, an unknown code (404) or one that cannot be answered (503)."""
        if isinstance(found, PreparedScan):
            return self._answer(request, found)
        outcome = "unknown" if found is None else "unavailable"
        if found is not None and not isinstance(found, UNAVAILABLE_EXCEPTIONS):  # counted in /metrics, not logged
            log.error("scan lookup failed", exc_info=found)
        self._page(request.conn, request.slot, outcome, request.connection, request.method == "HEAD", request.started)

    def _answer(self, request: _Request, scan: PreparedScan) -> None:
        if request.method == "POST" and not self.app.takes_password(scan.resolution):
            return self._not_allowed(request.conn, request.slot, request.connection, request.started)
        facts = self.scans.facts(request.headers, request.ip, request.conn.peer)
        if scan.decided is not None:  # a plain code: nothing about the visitor can change the answer
            return self._record(request, scan, facts, scan.decided)
        decided = self.app.decide(request.method, scan, facts, request.query, request.ip)
        if decided is not None:
            return self._record(request, scan, facts, decided)
        task = asyncio.get_running_loop().create_task(self._after_password(request, scan, facts))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _after_password(self, request: _Request, scan: PreparedScan, facts: Facts) -> None:
        try:
            decided = await self.app.check_password(scan.code, scan.resolution, facts, request.query, request.ip,
                                                    password_from_form(request.body))
        except Exception:
            log.exception("password check failed")
            return self._page(request.conn, request.slot, "unavailable", request.connection, False, request.started)
        try:
            self._record(request, scan, facts, decided)
        except Exception:
            self.failed(request.conn, request.slot)

    def _record(self, request: _Request, scan: PreparedScan, facts: Facts, decided: Answer) -> None:
        decision, page, extra = decided
        event = self.scans.event(request.method, request.query, request.headers, request.ip, facts, scan.event,
                                 decision)
        if decision.location is None:
            request.outcome = page
            fixed = self.pages[page] if not extra else responses.Fixed(
                PAGE_STATUS[page], responses.HTML + b"".join(k + b": " + v + b"\r\n" for k, v in extra),
                self.app.pages[page])
            request.answer = fixed.encode(self.server.date, request.connection, request.method == "HEAD")
        else:
            request.answer = responses.redirect(decision.location.render_bytes(request.query), self.server.date,
                                                request.connection)
        self.recorder.submit(event, request.recorded)

    def unrecorded(self, request: _Request) -> None:
        """Neither Redis nor the journal took the scan: it is not answered as if it had been."""
        self._page(request.conn, request.slot, "unavailable", request.connection, request.method == "HEAD",
                   request.started)

    def _not_allowed(self, conn: HttpConnection, slot: Slot, connection: bytes, started: float) -> None:
        self._count("not_allowed", started)
        conn.fill(slot, self.not_allowed.encode(self.server.date, connection))

    def _page(self, conn: HttpConnection, slot: Slot, outcome: str, connection: bytes, head_only: bool,
              started: float) -> None:
        self._count(outcome, started)
        conn.fill(slot, self.pages[outcome].encode(self.server.date, connection, head_only))

    def _count(self, outcome: str, started: float) -> None:
        self.metrics.answered(outcome, time.perf_counter() - started)

    def _operations(self, path: str, method: bytes, connection: bytes, peer: str, forwarded: bytes | None) -> bytes:
        if path != "/healthz" and not self.scans.client_address.operator(peer, forwarded, self.app.settings.ops_from):
            return self.pages["unknown"].encode(self.server.date, connection, method == HEAD)  # as any unknown slug
        if method not in (GET, HEAD):
            return responses.Fixed(405, responses.ALLOW, b"").encode(self.server.date, connection)
        if path == "/healthz":
            answer = responses.json_response(200, {"status": "ok"})
        elif path == "/readyz":
            answer = responses.json_response(*self.app.readiness())
        else:
            answer = responses.text_response(200, METRICS_TYPE, self.app.metrics.render())
        return answer.encode(self.server.date, connection, method == HEAD)


OPS = frozenset({"/healthz", "/readyz", "/metrics"})
METRICS_TYPE = CONTENT_TYPE_LATEST


def _absolute(url: bytes) -> tuple[bytes, bytes, bytes]:
    """`GET http://host/slug` (absolute form): its path and query; the Host header still names the domain."""
    try:
        parsed = httptools.parse_url(url)
    except httptools.HttpParserInvalidURLError:
        return b"", b"", b""
    return parsed.path or b"", b"", parsed.query or b""


class _Request:
    __slots__ = ("answer", "body", "conn", "connection", "handler", "headers", "ip", "method", "outcome", "query",
                 "slot", "started")

    def __init__(self, handler: ScanHandler, conn: HttpConnection, slot: Slot, method: str, query: bytes,
                 headers: dict[bytes, bytes], ip: str, connection: bytes, started: float, body: bytes) -> None:
        self.handler = handler
        self.conn = conn
        self.slot = slot
        self.method = method
        self.query = query
        self.headers = headers
        self.ip = ip
        self.connection = connection
        self.started = started
        self.body = body  # a POST's form, cut at FORM_LIMIT + 1 bytes
        self.answer = b""  # the response's bytes, written once the scan is recorded
        self.outcome = "redirected"

    def found(self, found: PreparedScan | None | Exception) -> None:
        """RowLookup.load's callback (a bound method: no closure per miss)."""
        try:
            self.handler.found(self, found)
        except Exception:
            self.handler.failed(self.conn, self.slot)

    def recorded(self, error: BaseException | None) -> None:
        """The recorder's callback, once the scan is stored (a bound method: no closure per scan)."""
        if error is not None:
            return self.handler.unrecorded(self)
        self.handler.metrics.answered(self.outcome, time.perf_counter() - self.started)
        self.conn.fill(self.slot, self.answer)

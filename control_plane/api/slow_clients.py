"""The control plane's HTTP protocol: uvicorn's httptools protocol with a deadline for reading requests.

uvicorn has no header-read timeout (its issue #157) and arms its keep-alive timer only after a first
response, so a client that connects and sends nothing, or half a request line, keeps a connection (and
its memory) forever. Here every request must arrive within `read_timeout` seconds: the headers from the
moment the connection opens (or the request's first byte, on a kept-alive connection), and the body
without a pause longer than that. A client that misses it is disconnected (docs/security.md,
"Slow clients"); together with uvicorn's `limit_concurrency` this bounds what slow clients can hold.

Past `limit_concurrency` (CONTROL_PLANE_MAX_CONNECTIONS) uvicorn answers 503 without calling the app, so
the refusals went uncounted and a liveness probe was refused like any request. Here the probes and the
scrape (`UNLIMITED_PATHS`) are always served, and a refused request goes to the app marked `OVER_CAPACITY`:
its metrics middleware counts it and answers the same 503 (docs/operations.md, "Metrics").
"""

from __future__ import annotations

import asyncio

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

REQUEST_READ_TIMEOUT = 10.0  # seconds; also the longest pause allowed while a body streams in
OVER_CAPACITY = "scanroute.over_capacity"  # scope key: answer 503, the process is at its connection limit
# Cheap answers a busy process must still give: a liveness probe that fails on a busy process restarts it, and
# a scrape is how the operator sees it is busy. /readyz stays limited: a full process is not ready for more.
UNLIMITED_PATHS = frozenset({b"/healthz", b"/metrics"})


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    read_timeout = REQUEST_READ_TIMEOUT
    _read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._read_deadline is None:  # a new request on a kept-alive connection; else the clock runs on
            self._arm()

    def on_headers_complete(self) -> None:
        limit = self.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            if httptools.parse_url(self.url).path not in UNLIMITED_PATHS:
                self.scope[OVER_CAPACITY] = True  # type: ignore[literal-required]
            # uvicorn's own check would answer 503 without the app: the app answers (and counts) it instead.
            self.limit_concurrency = None
            previous = self.cycle
            try:
                super().on_headers_complete()
            finally:
                self.limit_concurrency = limit
            if self.cycle is not previous:  # an upgrade request starts no cycle
                self.cycle.keep_alive = False  # answered, then closed: past the limit nothing stays open
        else:
            super().on_headers_complete()
        self._arm()  # the headers made it; the body gets its own window

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm()  # progress: the body may keep streaming

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def _arm(self) -> None:
        self._disarm()
        self._read_deadline = self.loop.call_later(self.read_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _too_slow(self) -> None:
        self._read_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def protocol_with_deadline(seconds: float) -> type[DeadlineHttpToolsProtocol]:
    return type("DeadlineHttpToolsProtocol", (DeadlineHttpToolsProtocol,), {"read_timeout": seconds})

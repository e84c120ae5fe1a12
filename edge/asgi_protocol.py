"""The HTTP protocol of `scanroute edge --server asgi`: uvicorn's httptools protocol with four changes, so that
it answers as the protocol server does (docs/edge.md, the table of limits).

Trailer fields: uvicorn appends the trailer fields that follow a chunked body to the request's header list,
the very list the app reads as `scope["headers"]`. Behind a proxy that forwards trailers, a client's trailer
`X-Forwarded-For`, `User-Agent` or `Host` would then choose its address, its user agent or the domain. The
protocol server never takes a trailer field as a header (edge/protocol.py), and neither does this one.

`Host`: uvicorn passes an HTTP/1.1 request without a `Host`, or with two, to the app, which would answer the
first with the 404 page and the second for whichever `Host` came last. The protocol server refuses both
(RFC 9112 §3.2: 400, and the connection closes); so does this one, before the app sees them. The 400 is
answered in the connection's order, after the answers before it, as uvicorn answers its `limit_concurrency`
503s. It is counted as the protocol server counts its refusals: `scanroute_edge_requests_total{outcome=
"malformed"}` (docs/operations.md, "The edge").

Bodies: the app reads every body to its end before it answers (edge/app.py `read_body`), and refuses one past
MAX_BODY (413, and close) as the protocol server does. uvicorn would keep what the client sends until the app
reads it — 64 KiB and the whole of the read that passed them, up to the transport's read size, before it stops
reading — and a request's body past MAX_BODY is refused whatever follows: this one keeps one byte past MAX_BODY
at most, enough for the app to refuse it, and discards the rest.

Closing after an answer: uvicorn closes the connection as soon as an answer with `connection: close` is written
(a 413, the 400s above, its own parser's 400), while the client may still be sending its body. Data left unread
when a socket closes makes the kernel send a reset, which can destroy the answer before the client reads it.
The protocol server closes its sending side only and keeps discarding what comes for LINGER seconds
(edge/protocol.py `_linger`); this one does the same, bounded in bytes too (docs/edge.md, `--server asgi`).
The connection's transport, as uvicorn's protocol and its cycles see it, is a `_LingeringTransport`: the same
bound methods for writes (nothing more per request), a `close` that lingers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from edge import responses
from edge.metrics import EdgeMetrics
from edge.protocol import LINGER, MAX_BODY

LINGER_BYTES = 1024 * 1024  # discarded after an answer that closes, at most: then the connection closes

_BAD_REQUEST = responses.error(400).body
_BAD_REQUEST_HEAD = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close"),
                     (b"content-length", str(len(_BAD_REQUEST)).encode())]


async def bad_request(scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]],
                      send: Callable[[MutableMapping[str, Any]], Awaitable[None]]) -> None:
    """The protocol server's 400 (edge/responses.py `error`); `connection: close` makes uvicorn close after it."""
    await send({"type": "http.response.start", "status": 400, "headers": _BAD_REQUEST_HEAD})
    await send({"type": "http.response.body", "body": _BAD_REQUEST})


def edge_metrics(app: Any) -> EdgeMetrics | None:
    """The metrics of the EdgeApp that `app` is, or wraps (uvicorn may wrap it in middleware of its own)."""
    for _ in range(8):  # a bound on the wrappers, not a count of them
        metrics = getattr(app, "metrics", None)
        if isinstance(metrics, EdgeMetrics):
            return metrics
        app = getattr(app, "app", None)
        if app is None:
            break
    return None


class _Drain(asyncio.Protocol):
    """The protocol of a lingering connection: discards what the client still sends, until its end of stream,
    LINGER_BYTES or LINGER seconds, whichever comes first; then the connection closes."""

    def __init__(self, transport: asyncio.Transport, protocol: HeadOnlyHttpToolsProtocol) -> None:
        self.transport = transport
        self.protocol = protocol
        self.left = LINGER_BYTES
        self.timer = protocol.loop.call_later(LINGER, transport.close)

    def data_received(self, data: bytes) -> None:
        self.left -= len(data)
        if self.left < 0:
            self.transport.close()

    def eof_received(self) -> bool:
        return False  # the transport closes

    def pause_writing(self) -> None:
        self.protocol.pause_writing()

    def resume_writing(self) -> None:
        self.protocol.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.timer.cancel()
        self.protocol.connection_lost(exc)  # uvicorn's bookkeeping of the connection


class _LingeringTransport:
    """A connection's transport as uvicorn sees it: writes go straight to the transport (the same bound
    methods), `close` closes the sending side only and drains the rest (`_Drain`). It holds the transport
    only: no reference cycle with the protocol."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.raw = transport
        self.lingering = False
        self.write = transport.write
        self.is_closing = transport.is_closing
        self.get_extra_info = transport.get_extra_info
        self.set_protocol = transport.set_protocol

    def close(self) -> None:
        raw = self.raw
        if self.lingering or raw.is_closing() or not raw.can_write_eof():
            raw.close()
            return
        self.lingering = True
        self.is_closing = _closing  # uvicorn starts no pipelined request, nor a keep-alive timer, after this
        # A request still in flight behind the one that closed (its answer comes later) is dropped, as before
        # lingering: a write after the sending side is shut would raise in the app.
        self.write = _discard
        protocol = cast(HeadOnlyHttpToolsProtocol, raw.get_protocol())
        raw.write_eof()
        raw.set_protocol(_Drain(raw, protocol))
        protocol.flow.resume_reading()  # uvicorn pauses reading while a body waits for the app to read it


def _closing() -> bool:
    return True


def _discard(data: bytes | bytearray | memoryview) -> None:
    pass


class HeadOnlyHttpToolsProtocol(HttpToolsProtocol):
    _head_complete = False
    _hosts = 0  # `Host` fields in the request's head
    _body_bytes = 0  # of the request's body, so far

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = cast(asyncio.Transport, _LingeringTransport(transport))

    def _close_now(self) -> None:
        """Close without lingering: no answer of ours is on its way to the client."""
        cast(_LingeringTransport, self.transport).raw.close()

    def timeout_keep_alive_handler(self) -> None:
        if not self.transport.is_closing():
            self._close_now()

    def shutdown(self) -> None:
        if self.cycle is None or self.cycle.response_complete:  # idle: close now (uvicorn's shutdown, unlingered)
            self._close_now()
        else:
            super().shutdown()  # the answer in flight closes the connection, and lingers

    def on_message_begin(self) -> None:
        self._head_complete = False
        self._hosts = 0
        self._body_bytes = 0
        super().on_message_begin()

    def on_body(self, body: bytes) -> None:
        read = self._body_bytes
        self._body_bytes = read + len(body)
        if read > MAX_BODY:
            return  # the app has what makes it answer 413 (and close): the rest is discarded, never kept
        if read + len(body) > MAX_BODY:
            body = body[:MAX_BODY + 1 - read]  # one byte past the limit, whatever the size of this read
        super().on_body(body)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._head_complete:  # else a trailer field (RFC 9110 §6.5.1): not a header
            super().on_header(name, value)
            if self.headers[-1][0] == b"host":  # lower-cased by uvicorn
                self._hosts += 1

    def on_headers_complete(self) -> None:
        self._head_complete = True
        if self._hosts == 1 or self.parser.get_http_version() != "1.1":
            return super().on_headers_complete()
        app, self.app = self.app, bad_request  # this request only: the cycle it starts answers 400
        metrics = edge_metrics(app)
        if metrics is not None:  # counted as the protocol server counts it (edge/scan_handler.py `rejected`)
            metrics.answered("malformed", 0.0)
        try:
            super().on_headers_complete()
        finally:
            self.app = app


# How `scanroute edge --server asgi` runs uvicorn, whatever else it is given (and the tests, likewise): this
# protocol; no proxy headers (the edge reads X-Forwarded-For itself, from TRUSTED_PROXIES only); no WebSocket
# (an upgrade request is answered as any request to its path — uvicorn's WebSocket protocol would hand the app
# a scope it does not serve, an error and a traceback per request).
UVICORN_OPTIONS: dict[str, Any] = {"http": HeadOnlyHttpToolsProtocol, "proxy_headers": False, "ws": "none"}

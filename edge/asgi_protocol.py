"""The HTTP protocol of `scanroute edge --server asgi`: uvicorn's httptools protocol with two changes, so that
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
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from edge import responses
from edge.metrics import EdgeMetrics

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


class HeadOnlyHttpToolsProtocol(HttpToolsProtocol):
    _head_complete = False
    _hosts = 0  # `Host` fields in the request's head

    def on_message_begin(self) -> None:
        self._head_complete = False
        self._hosts = 0
        super().on_message_begin()

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

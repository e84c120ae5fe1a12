"""The HTTP protocol of `scanroute edge --server asgi`: uvicorn's httptools protocol without trailer fields.

uvicorn appends the trailer fields that follow a chunked body to the request's header list, the very list
the app reads as `scope["headers"]`. Behind a proxy that forwards trailers, a client's trailer
`X-Forwarded-For`, `User-Agent` or `Host` would then choose its address, its user agent or the domain. The
protocol server never takes a trailer field as a header (edge/protocol.py), and neither does this one
(docs/edge.md, the table of limits).
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeadOnlyHttpToolsProtocol(HttpToolsProtocol):
    _head_complete = False

    def on_message_begin(self) -> None:
        self._head_complete = False
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._head_complete:  # else a trailer field (RFC 9110 §6.5.1): not a header
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_complete = True
        super().on_headers_complete()

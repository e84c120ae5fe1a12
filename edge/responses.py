"""HTTP/1.1 responses of the protocol server, assembled ahead of time as far as they can be: a scan's
answer is a few `bytes` joined into one `transport.write`."""

from __future__ import annotations

from email.utils import formatdate
from http import HTTPStatus

import orjson

KEEP_ALIVE = b""
CLOSE = b"connection: close\r\n"
HTML = b"content-type: text/html; charset=utf-8\r\ncache-control: no-store\r\n"
RETRY = b"retry-after: 2\r\n"
ALLOW = b"allow: GET, HEAD\r\n"
_REDIRECT_TAIL = b"\r\ncache-control: private, no-store\r\ncontent-type: text/plain\r\ncontent-length: 0\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def http_date() -> bytes:
    return formatdate(usegmt=True).encode()


def _status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()


class Fixed:
    """A response whose status, headers and body never change (pages, errors): only `date` and
    `connection` are added per request."""

    __slots__ = ("body", "head")

    def __init__(self, status: int, headers: bytes, body: bytes) -> None:
        self.head = _status_line(status) + headers + f"content-length: {len(body)}\r\n".encode()
        self.body = body

    def encode(self, date: bytes, connection: bytes, head_only: bool = False) -> bytes:
        return b"".join((self.head, b"date: ", date, b"\r\n", connection, b"\r\n",
                         b"" if head_only else self.body))


def redirect(location: bytes, date: bytes, connection: bytes) -> bytes:
    """The 302 of a scan; the same for HEAD (it has no body)."""
    return b"".join((b"HTTP/1.1 302 Found\r\ndate: ", date, b"\r\nlocation: ", location, _REDIRECT_TAIL,
                     connection, b"\r\n"))


def json_response(status: int, body: object) -> Fixed:
    return Fixed(status, b"content-type: application/json\r\n", orjson.dumps(body))


def text_response(status: int, content_type: str, body: bytes) -> Fixed:
    return Fixed(status, f"content-type: {content_type}\r\n".encode(), body)


def error(status: int) -> Fixed:
    """A protocol-level error (400, 413, 431, …): plain text, and the connection closes after it."""
    return Fixed(status, b"content-type: text/plain; charset=utf-8\r\n", HTTPStatus(status).phrase.encode())


def pages(bodies: dict[str, bytes], statuses: dict[str, int]) -> dict[str, Fixed]:
    """outcome → its HTML page response."""
    return {outcome: Fixed(statuses[outcome], HTML + (RETRY if statuses[outcome] == 503 else b""), body)
            for outcome, body in bodies.items()}

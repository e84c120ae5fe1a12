"""The password form's POST body (docs/rules.md, "Passwords"): `application/x-www-form-urlencoded`,
read up to a small limit — a password is short, and the body is read before any hashing starts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

FORM_LIMIT = 4096  # bytes of body read at most; a longer body counts as a wrong password
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


def password_from_form(body: bytes) -> str:
    if len(body) > FORM_LIMIT:
        return ""
    values = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).get("password")
    return values[0] if values else ""


class BodyTooLarge(Exception):
    """A request body longer than the edge reads (docs/edge.md: 413)."""


async def read_form(receive: Receive, limit: int) -> bytes | None:
    """An ASGI request body read to its end, as the protocol server reads one (edge/protocol.py): its first
    FORM_LIMIT + 1 bytes, the rest discarded; BodyTooLarge once it passes `limit` bytes, None if the client
    went away before its end (then nothing is answered, nor counted: the request was never complete)."""
    body = b""
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        if len(body) <= FORM_LIMIT:
            body += chunk[:FORM_LIMIT + 1 - len(body)]
        if not message.get("more_body", False):
            return body

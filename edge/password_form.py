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


async def read_password(receive: Receive) -> str:
    """The `password` field of an ASGI request body ("" if absent or too long)."""
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return ""  # the client went away
        body += message.get("body", b"")
        if len(body) > FORM_LIMIT:
            return ""
        if not message.get("more_body", False):
            return password_from_form(body)

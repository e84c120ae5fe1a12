"""The reference for edge benchmarks: a bare ASGI app answering every request with a fixed 302."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
START = {"type": "http.response.start", "status": 302,
         "headers": [(b"location", b"https://example.com/menu?utm_campaign=fall24"), (b"content-length", b"0")]}
BODY = {"type": "http.response.body", "body": b""}


async def app(scope: Message, receive: Callable[[], Awaitable[Message]],
              send: Callable[[Message], Awaitable[None]]) -> None:
    if scope["type"] == "http":
        await send(START)
        await send(BODY)

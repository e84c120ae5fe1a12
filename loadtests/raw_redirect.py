"""A reference for `make bench-edge`: a raw `asyncio.Protocol` on uvloop with httptools answering every
request with a fixed 302 — the ceiling of any Python server built from these parts (no routing, no work)."""

from __future__ import annotations

import asyncio
import sys

import httptools
import uvloop

RESPONSE = (b"HTTP/1.1 302 Found\r\nlocation: https://example.com/menu?utm_campaign=fall24\r\n"
            b"content-length: 0\r\n\r\n")


class FixedRedirect(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_complete(self) -> None:
        assert self.transport is not None
        self.transport.write(RESPONSE)


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(FixedRedirect, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))

"""Raw-socket HTTP for the protocol server's tests, with h11 as an independent parser of what it sends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import h11

READ_TIMEOUT = 10.0  # seconds: bounds every wait on the server, never asserted as a speed


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


@asynccontextmanager
async def connected(address: tuple[str, int]) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(*address)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), READ_TIMEOUT)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), READ_TIMEOUT) == b""
    except ConnectionResetError:
        return True


def request_bytes(method: str, target: str, host: str = "qr.test", headers: list[tuple[str, str]] | None = None,
                  body: bytes = b"") -> bytes:
    """A request as h11 writes it (so that our requests are standard, not tuned to our server)."""
    client = h11.Connection(h11.CLIENT)
    fields = [("Host", host), *(headers or [])]
    if body:
        fields.append(("Content-Length", str(len(body))))
    data = client.send(h11.Request(method=method, target=target, headers=fields))
    data += client.send(h11.Data(data=body)) if body else b""
    return data + client.send(h11.EndOfMessage())


class Responses:
    """Parses the answers to requests sent on one connection, in order, with h11 (pipelining included)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.buffered = b""

    async def next(self, method: str = "GET") -> Answer:
        """The next answer; `method` matters for HEAD only (whose answer has no body)."""
        client = h11.Connection(h11.CLIENT)
        client.send(h11.Request(method=method, target="/", headers=[("Host", "qr.test")]))
        client.send(h11.EndOfMessage())
        if self.buffered:
            client.receive_data(self.buffered)  # b"" would mean end of stream to h11
        answer: Answer | None = None
        body = b""
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(self.reader.read(65536), READ_TIMEOUT)
                client.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                answer = Answer(event.status_code, {k.decode(): v.decode() for k, v in event.headers}, b"")
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert answer is not None
                answer.body = body
                self.buffered = client.trailing_data[0]
                return answer
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("closed before a complete answer")

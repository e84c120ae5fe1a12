"""A deliberately broken edge, for proving that the load test's accounting catches what it claims to.

It sits between the load generator and a real edge and, on every `every`-th request (counted over all
connections), does one of:

- `503`: answers 503 itself (an answer outside the contract);
- `duplicate`: sends the request to the edge twice and returns the second answer (one answer, two scans);
- `drop`: sends it with another `Referer`, so the scan the visitor got is stored under another identity
  (for the accounting: an answered scan with no row — a lost scan).

Scan requests have no body; responses are read by their `Content-Length` (none after `HEAD`).
Used by `make loadtest-faults` (LOAD_FAULT=mode:every, loadtests/run_loadtest.py).
"""

from __future__ import annotations

import asyncio
import itertools
import re
from dataclasses import dataclass, field

HEAD_END = b"\r\n\r\n"
REFERER = re.compile(rb"(?im)^referer: *([^\r\n]*)")
CONTENT_LENGTH = re.compile(rb"(?im)^content-length: *(\d+)")
UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"


@dataclass
class FaultProxy:
    upstream: tuple[str, int]
    mode: str
    every: int
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    injected: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        try:
            while True:
                try:
                    request = await reader.readuntil(HEAD_END)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                writer.write(await self.answer(request, up_reader, up_writer))
                await writer.drain()
        finally:
            up_writer.close()
            writer.close()

    async def answer(self, request: bytes, up_reader: asyncio.StreamReader,
                     up_writer: asyncio.StreamWriter) -> bytes:
        head_only = request.startswith(b"HEAD ")
        if next(self.counter) % self.every:
            return await _exchange(request, head_only, up_reader, up_writer)
        self.injected += 1
        if self.mode == "503":
            return UNAVAILABLE
        if self.mode == "duplicate":
            await _exchange(request, head_only, up_reader, up_writer)
            return await _exchange(request, head_only, up_reader, up_writer)
        if self.mode == "drop":
            renamed = REFERER.sub(lambda m: b"Referer: " + m.group(1) + b"-stored-elsewhere", request, count=1)
            return await _exchange(renamed, head_only, up_reader, up_writer)
        raise ValueError(f"unknown fault mode {self.mode!r}")


async def _exchange(request: bytes, head_only: bool, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> bytes:
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(HEAD_END)
    length = CONTENT_LENGTH.search(head)
    body = await reader.readexactly(int(length.group(1))) if length and not head_only else b""
    return head + body


async def serve(proxy: FaultProxy, port: int, stop: asyncio.Event) -> None:
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await stop.wait()

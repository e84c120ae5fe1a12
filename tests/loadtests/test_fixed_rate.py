"""The open-loop client behind `make bench-edge`'s latency figures counts a server's stall against the server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests import fixed_rate

ANSWER = b"HTTP/1.1 302 Found\r\nlocation: https://example.com/\r\ncontent-length: 0\r\n\r\n"
RATE, SECONDS, STALL_AT, STALL = 2_000, 1.5, 1_000, 0.08  # the stall: 80 ms, half-way through


class StallingServer(asyncio.Protocol):
    """Answers each request with a 302; the STALL_AT-th request freezes the whole event loop for STALL seconds."""
    requests = 0
    open: set[asyncio.Transport] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        StallingServer.open.add(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        StallingServer.open.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        for _ in range(data.count(b"\r\n\r\n")):
            StallingServer.requests += 1
            if StallingServer.requests == STALL_AT:
                time.sleep(STALL)
            self.transport.write(ANSWER)


@pytest.fixture
def server_port() -> Iterator[int]:
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(StallingServer, "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield server.sockets[0].getsockname()[1]

    async def shut() -> None:
        # Every accepted connection closed on the loop before it stops: a transport left open would be
        # garbage-collected later, warning (an error here) in whichever test happens to run then.
        server.close()
        for transport in list(StallingServer.open):
            transport.close()
        await server.wait_closed()
        await asyncio.sleep(0)

    asyncio.run_coroutine_threadsafe(shut(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


def test_a_stall_delays_the_requests_due_during_it_and_is_found_in_the_trace(server_port: int,
                                                                            tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    got = fixed_rate.measure("127.0.0.1", server_port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", RATE, SECONDS,
                             connections=8, trace=trace)
    assert got.answered == got.sent == RATE * SECONDS and got.bad == 0
    lines = trace.read_text().splitlines()
    assert len(lines) == got.answered
    # Counted from when each request was due, not from when the stalled client could write it: the requests
    # due during the 80 ms all waited, so far more than 1 % of the answers took longer than 40 ms would.
    assert got.p99_ms >= 40
    stall_due_ms = STALL_AT / RATE * 1000
    assert any(stall_due_ms - 50 <= due <= stall_due_ms + 50 and latency >= STALL * 1000 * 0.9
               for due, latency in fixed_rate.stalls(trace, above_ms=40)), fixed_rate.stalls(trace, above_ms=40)

"""A small open-loop HTTP/1.1 load generator for latency at a fixed rate (Debian has no wrk2).

Requests are due at `start + i / rate`, spread over the connections round-robin and sent when due whether
or not earlier answers have arrived (pipelining), and each latency counts from when its request was due:
a stalled server cannot hide its stall by slowing the client down (no coordinated omission).

Kept cheap so that one client process can drive tens of thousands of requests per second: the requests
that fall due in one tick leave in one write per connection, and answers are framed by scanning the read
buffer from an offset (one clock reading per read, shared by the answers it completes).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque
from dataclasses import dataclass

import uvloop

TICK = 0.0005  # seconds between sends of the requests that have fallen due


@dataclass(frozen=True)
class Latencies:
    sent: int
    answered: int
    bad: int  # answers other than 2xx/3xx, and requests never answered
    rate: float  # answers per second achieved
    p50_ms: float
    p99_ms: float
    max_ms: float


class _Connection(asyncio.Protocol):
    def __init__(self, results: list[float], statuses: list[int]) -> None:
        self.due: deque[float] = deque()
        self.buffer = bytearray()
        self.results = results
        self.statuses = statuses
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, requests: bytes, dues: list[float]) -> None:
        assert self.transport is not None
        self.due.extend(dues)
        self.transport.write(requests)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buffer = self.buffer
        buffer += data
        start = 0
        while (end := buffer.find(b"\r\n\r\n", start)) >= 0:
            at = buffer.find(b"content-length:", start, end)
            if at < 0:
                at = buffer.find(b"Content-Length:", start, end)
            length = int(buffer[at + 15:buffer.find(b"\r\n", at, end + 2)]) if at >= 0 else 0
            if len(buffer) < end + 4 + length:
                break
            self.statuses.append(int(buffer[start + 9:start + 12]))
            self.results.append(now - self.due.popleft())
            start = end + 4 + length
        if start:
            del buffer[:start]


async def run(host: str, port: int, request: bytes, rate: float, seconds: float, connections: int = 64) -> Latencies:
    loop = asyncio.get_running_loop()
    results: list[float] = []
    statuses: list[int] = []
    conns = []
    for _ in range(connections):
        _, protocol = await loop.create_connection(lambda: _Connection(results, statuses), host, port)
        conns.append(protocol)
    start = time.perf_counter()
    total = int(rate * seconds)
    sent = 0
    while sent < total:
        due_now = min(total, int((time.perf_counter() - start) * rate) + 1)
        batches: dict[int, list[float]] = {}
        while sent < due_now:
            batches.setdefault(sent % connections, []).append(start + sent / rate)
            sent += 1
        for index, dues in batches.items():
            conns[index].send(request * len(dues), dues)
        await asyncio.sleep(TICK)
    deadline = time.perf_counter() + 10.0
    while len(results) < sent and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - start
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    ordered = sorted(results) or [float("nan")]
    bad = sum(1 for s in statuses if not 200 <= s < 400) + (sent - len(results))
    return Latencies(sent, len(results), bad, len(results) / elapsed, statistics.median(ordered) * 1000,
                     ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, ordered[-1] * 1000)


def measure(host: str, port: int, request: bytes, rate: float, seconds: float, connections: int = 64) -> Latencies:
    return uvloop.run(run(host, port, request, rate, seconds, connections))

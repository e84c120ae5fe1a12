"""A small open-loop HTTP/1.1 load generator for latency at a fixed rate (Debian has no wrk2).

Requests are due at `start + i / rate`, spread over the connections round-robin and sent when due whether
or not earlier answers have arrived (pipelining), and each latency counts from when its request was due:
a stalled server cannot hide its stall by slowing the client down (no coordinated omission).
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
        self.buffer = b""
        self.results = results
        self.statuses = statuses
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes, due: float) -> None:
        assert self.transport is not None
        self.due.append(due)
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15:].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            self.statuses.append(int(head[9:12]))
            self.results.append(time.perf_counter() - self.due.popleft())


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
        while sent < due_now:
            conns[sent % connections].send(request, start + sent / rate)
            sent += 1
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

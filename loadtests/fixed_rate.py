"""Latency at a fixed rate, open loop (Debian has no wrk2): `loadtests/fixed_rate.c`, compiled at run time.

Requests are due at `start + i / rate`, spread over the connections round-robin; a connection sends one at
a time (as a phone's browser, and wrk2), so a request due while its connection still waits for an answer
waits in the client — and each latency counts from when its request was due: a stalled server cannot hide
its stall by slowing the client down (no coordinated omission). `depth` > 1 lets that many requests wait on
a connection (pipelining), 0 without limit. Until 2026-12-01 the client always pipelined, and the Python
servers fell far below the rate offered — bare uvicorn answered 19.5k of 33.1k req/s, p50 7.4 s — where one
request at a time per connection it held 31.4k of 31.4k, p50 0.64 ms (BENCHMARKS.md, 2026-12-01 "p99").

The timer wakes the client at most every 100 µs (requests due in between leave together, up to 100 µs late;
their latency still counts from when they were due), and a read that drains the socket is not followed by
one that would find it empty: at 25k req/s the client used 74 % of its core with a wake-up per request and
a second read per answer, 38–45 % without — the core it shares with Redis, which every edge answer waits for
(BENCHMARKS.md, 2026-12-01 "p99").

The client is C (one epoll loop, a timerfd for the due times) because a Python client could not generate
the rates needed on the one CPU it shares with wrk, PostgreSQL and Redis: it reached 12–26k req/s
(BENCHMARKS.md). It is built with the machine's `cc` (`make bench-edge` installs gcc on Debian when it is
missing) into a cache directory, once per version of the source.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "fixed_rate.c"


@dataclass(frozen=True)
class Latencies:
    sent: int  # requests due
    answered: int
    bad: int  # answers other than 2xx/3xx, and requests never answered
    rate: float  # answers per second achieved
    p50_ms: float
    p99_ms: float
    max_ms: float
    p999_ms: float = float("nan")


def build() -> Path:
    """The compiled client (built on first use, and again whenever fixed_rate.c changes)."""
    source = SOURCE.read_bytes()
    binary = Path(tempfile.gettempdir()) / f"scanroute-fixed-rate-{hashlib.sha256(source).hexdigest()[:16]}"
    if binary.exists():
        return binary
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler: install gcc (Debian: apt-get install gcc), or run `make bench-edge`")
    partial = binary.with_suffix(f".{os.getpid()}")
    subprocess.run([compiler, "-O2", "-o", str(partial), str(SOURCE)], check=True, timeout=120)
    partial.replace(binary)  # atomic: two benches building at once both get a whole binary
    return binary


def measure(host: str, port: int, request: bytes, rate: float, seconds: float, connections: int = 64,
            cpu: str | None = None, depth: int = 1, trace: Path | None = None) -> Latencies:
    """Send `request` at `rate` per second for `seconds` over `connections`, at most `depth` awaiting their answers
    on a connection (0: no limit); `cpu` pins the client; `trace` gets each answer's due time and latency (ns), a
    line each in the order they came (see fixed_rate.c)."""
    binary = build()
    with tempfile.NamedTemporaryFile(prefix="scanroute-request-") as file:
        file.write(request)
        file.flush()
        argv = [str(binary), host, str(port), f"{rate:.3f}", f"{seconds:g}", str(connections), file.name, str(depth),
                *([str(trace)] if trace is not None else [])]
        if cpu is not None:
            argv = ["taskset", "-c", cpu, *argv]
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    values = dict(pair.split("=", 1) for pair in out.split())
    return Latencies(sent=int(values["due"]), answered=int(values["answered"]),
                     bad=int(values["bad"]) + int(values["unanswered"]), rate=float(values["achieved"]),
                     p50_ms=float(values["p50_ms"]), p99_ms=float(values["p99_ms"]),
                     max_ms=float(values["max_ms"]), p999_ms=float(values["p999_ms"]))


def stalls(trace: Path, above_ms: float = 4.0) -> list[tuple[float, float]]:
    """From a `trace`: where the server (or the machine) stalled — each answer that took longer than `above_ms`
    when the request due before it took less than half that, as (its due time, its latency) in ms."""
    onsets, previous = [], 0
    for due, latency in sorted(tuple(map(int, line.split())) for line in trace.read_text().splitlines()):
        if latency > above_ms * 1e6 and previous < above_ms * 5e5:
            onsets.append((due / 1e6, latency / 1e6))
        previous = latency
    return onsets


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("port", type=int)
    parser.add_argument("rate", type=float)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--path", default="/", help="GET this path, Host: localhost")
    parser.add_argument("--depth", type=int, default=1, help="requests awaiting answers per connection (0: no limit)")
    parser.add_argument("--trace", type=Path, help="write each answer's due time and latency here, and list the stalls")
    args = parser.parse_args()
    print(measure(args.host, args.port, f"GET {args.path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode(), args.rate,
                  args.seconds, args.connections, depth=args.depth, trace=args.trace))
    if args.trace:
        found = stalls(args.trace)
        print(f"{len(found)} stalls (an answer over 4 ms after one under 2 ms), at ms after the first due time:",
              ", ".join(f"{due:,.0f} ({latency:.1f} ms)" for due, latency in found))

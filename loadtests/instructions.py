"""`make bench-edge-instructions`: user-space instructions per request, counted by valgrind's callgrind, for the
protocol edge on `make bench-edge`'s case (a) and for its reference, bare uvicorn's fixed 302 (BENCHMARKS.md).

Wall time and CPU time move with whatever else runs on a shared machine, and this machine has no hardware
counters for `perf stat`; callgrind counts the instructions a process executes, the same from run to run.
Each server runs under `valgrind --tool=callgrind --instr-atstart=no` (start-up is not instrumented), is
warmed up, then instrumented; `callgrind_control` zeroes the counters, the client makes N requests, the
counters are dumped; then the same with 2N. Instructions per request = (count for 2N - count for N) / N, so
what does not grow with the requests (timers, the follower thread idling) cancels out.

The client: 64 keep-alive connections, one request at a time each (as `wrk -c64`), in this process; the
requests are `bench-edge`'s: (a)'s hot code with a phone's headers for the edge, `GET /` with a Host for the
reference. Every scan is acknowledged by the private Redis before its 302, as in `bench-edge`.

Not counted: the kernel's work (a loopback read and write per request, which both servers pay alike) and the
work of Redis; only instructions, not the cycles they take.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from loadtests.bench_edge import HOST, HOT_REQUEST, UVICORN_FLAGS, edge_env, empty_scan_stream, seed, wait_listening
from shared.embedded import EmbeddedServices, free_port, temporary_root
from shared.processes import spawn, stop

CONNECTIONS = 64
IDLE_SECONDS = 10.0
REFERENCE_REQUEST = f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
RULES_REQUEST = HOT_REQUEST.replace(b"GET /h1?", b"GET /r1?", 1)  # bench-edge (e): the rules group's first code


def first_touches() -> Callable[[], bytes]:
    """bench-edge (b)'s long tail: each request names a code not asked for before (z1, z2, …), its row warm in
    Redis and absent from the edge's local cache — a first scan, or the first after the entry's TTL."""
    numbers = itertools.count(1)
    return lambda: HOT_REQUEST.replace(b"GET /h1?", b"GET /z%d?" % next(numbers), 1)


def refreshes(codes: int) -> Callable[[], bytes]:
    """bench-edge (b)'s codes seen again after their entry's TTL: z1 … z`codes` in turn, each asked for again
    only after all the others (the edge runs with a 1 s TTL, and under callgrind `codes` requests take longer):
    the row is read again and found unchanged, the cached entry kept (docs/edge.md)."""
    numbers = itertools.cycle(range(1, codes + 1))
    return lambda: HOT_REQUEST.replace(b"GET /h1?", b"GET /z%d?" % next(numbers), 1)


def warm_up_requests(requests: int) -> int:
    """The requests `measure` makes before counting."""
    return min(requests, 2000) + 500


def first_touch_codes(requests: int) -> int:
    """How many codes `measure` asks for with `first_touches`: its warm-ups, then N and 2N."""
    return warm_up_requests(requests) + 3 * requests
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)


Request = bytes | Callable[[], bytes]  # the same request every time, or a new one each time


async def _connection(port: int, request: Request, count: int, statuses: dict[bytes, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(count):
            writer.write(request if isinstance(request, bytes) else request())
            head = await reader.readuntil(b"\r\n\r\n")
            length = _CONTENT_LENGTH.search(head)
            if length and int(length[1]):
                await reader.readexactly(int(length[1]))
            status = head[9:12]
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


def drive(port: int, request: Request, requests: int) -> dict[bytes, int]:
    """`requests` requests over CONNECTIONS connections; the count of each status answered."""
    statuses: dict[bytes, int] = {}

    async def run() -> None:
        each, extra = divmod(requests, CONNECTIONS)
        await asyncio.gather(*(_connection(port, request, each + (n < extra), statuses) for n in range(CONNECTIONS)))

    asyncio.run(run())
    return statuses


def _drive_into(statuses: dict[bytes, int], port: int, request: Request, requests: int) -> None:
    statuses.update(drive(port, request, requests))


def _batches(port: int) -> tuple[float, float]:
    """The edge's recorder batches so far, from /metrics: (batches, scans in them)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as answer:
        text = answer.read().decode()
    count, total = (float(re.search(rf"^scanroute_edge_record_batch_size_{name} (\S+)", text, re.MULTILINE)[1])  # type: ignore[index]
                    for name in ("count", "sum"))
    return count, total


def _control(pid: int, *options: str) -> None:
    subprocess.run(["callgrind_control", *options, str(pid)], check=True, capture_output=True, timeout=120)


def _dumped(folder: Path, pid: int, seen: set[Path]) -> int:
    """The instructions counted in the newest dump of `pid` (callgrind names them callgrind.out.PID.N)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = sorted(set(folder.glob(f"callgrind.out.{pid}.*")) - seen)
        if new:
            seen.update(new)
            text = new[-1].read_text(errors="replace")
            totals = re.search(r"^(?:summary|totals): *(\d+)", text, re.MULTILINE)
            if totals:
                return int(totals[1])
        time.sleep(0.2)
    raise RuntimeError(f"callgrind wrote no dump for {pid} in {folder}")


@contextlib.contextmanager
def under_callgrind(argv: list[str], port: int, folder: Path, env: dict[str, str] | None = None,
                    cwd: str | None = None) -> Iterator[int]:
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--dump-instr=no",
                f"--callgrind-out-file={folder}/callgrind.out.%p", "--trace-children=no",
                f"--log-file={folder}/valgrind.%p.log"]
    # A fixed hash seed: dict layouts, and so the instructions, are the same from run to run.
    process = spawn([*valgrind, *argv], env={**(env or os.environ), "PYTHONHASHSEED": "0"}, cwd=cwd)
    try:
        wait_listening(port, process, timeout=300)
        yield process.pid
    finally:
        stop(process, timeout=120)


def _window(pid: int, folder: Path, seen: set[Path], work: Callable[[], object]) -> tuple[int, float]:
    """Instructions counted while `work` ran, and the seconds it took."""
    _control(pid, "--zero")
    started = time.monotonic()
    work()
    seconds = time.monotonic() - started
    _control(pid, "--dump")
    return _dumped(folder, pid, seen), seconds


def measure(name: str, argv: list[str], port: int, request: Request, requests: int, folder: Path,
            env: dict[str, str] | None = None, batches: bool = False, cwd: str | None = None) -> tuple[float, float]:
    """Instructions per request of the server `argv` (listening on `port`) answering `request`: as counted, and
    without the server's idle work (timers, a follower thread waking up), which under valgrind's slowdown
    would otherwise be charged to the requests ~50 times over. With `batches`, also prints the mean size of
    the recorder's batches (an edge's, read from /metrics outside the counts)."""
    with under_callgrind(argv, port, folder, env, cwd) as pid:
        seen: set[Path] = set()
        drive(port, request, min(requests, 2000))  # warm-up: caches, lazily built state, the interpreter's
        _control(pid, "--instr=on")
        drive(port, request, 500)  # the instrumented code is translated again on first use
        idle, idle_seconds = _window(pid, folder, seen, lambda: time.sleep(IDLE_SECONDS))
        rate = idle / idle_seconds
        print(f"  {name}: idle {rate:,.0f} instructions per second", flush=True)
        counts, corrected = {}, {}
        for n in (requests, 2 * requests):
            empty_scan_stream()
            before = _batches(port) if batches else (0.0, 0.0)
            statuses: dict[bytes, int] = {}
            counts[n], seconds = _window(pid, folder, seen, functools.partial(_drive_into, statuses, port, request, n))
            corrected[n] = counts[n] - rate * seconds
            after = _batches(port) if batches else (0.0, 0.0)
            mean = f"; {(after[1] - before[1]) / (after[0] - before[0]):.1f} scans per batch" if batches else ""
            print(f"  {name}: {n:,} requests in {seconds:.1f} s ({_statuses(statuses)}): {counts[n]:,} instructions"
                  f" ({counts[n] / n:,.0f} per request, {corrected[n] / n:,.0f} without idle work{mean})", flush=True)
    return ((counts[2 * requests] - counts[requests]) / requests,
            (corrected[2 * requests] - corrected[requests]) / requests)


def _statuses(statuses: dict[bytes, int]) -> str:
    return ", ".join(f"{count:,} × {status.decode()}" for status, count in sorted(statuses.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000, help="N: requests of the first count (then 2N)")
    parser.add_argument("--only", default="bare,edge", help="comma-separated: bare, edge, edge-e (case (e):"
                        " a code whose group has 20 rules and a split), edge-cold (each request a code the edge"
                        " has not cached: (b)'s long tail), edge-refresh (each request a code seen again past its"
                        " TTL, its row unchanged in Redis: most of (b)'s misses in bench-edge's later rounds)")
    parser.add_argument("--edge-source", help="a source tree to run the edge from (e.g. a `git worktree` of"
                        " another commit, to compare): it is started with that tree as its working directory")
    parser.add_argument("--keep", help="a folder to keep the callgrind dumps in (for callgrind_annotate)")
    args = parser.parse_args()
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("valgrind is missing: install it (Debian/Ubuntu: apt-get install valgrind)")
        return 1
    only = set(args.only.split(","))
    folder = Path(args.keep or tempfile.mkdtemp(prefix="scanroute-callgrind-"))
    folder.mkdir(parents=True, exist_ok=True)
    root = temporary_root("scanroute-instructions-")
    services = EmbeddedServices(root, persistent=False)
    services.start()
    os.environ["BENCH_REDIS_URL"] = services.redis_url
    results: dict[str, tuple[float, float]] = {}
    try:
        asyncio.run(seed(services.database_url, first_touch_codes(args.requests)
                         if only & {"edge-cold", "edge-refresh"} else 1000))
        python = sys.executable
        if "bare" in only:
            port = free_port()
            results["bare"] = measure("bare uvicorn", [python, "-m", "uvicorn", "loadtests.bare_redirect:app",
                                                       "--port", str(port), *UVICORN_FLAGS],
                                      port, REFERENCE_REQUEST, args.requests, folder)
        if "edge" in only:
            port = free_port()
            env = {**os.environ, **edge_env(services, root, port, "instructions")}
            results["edge"] = measure("edge protocol (a)", [python, "-m", "control_plane.cli", "edge"], port,
                                      HOT_REQUEST, args.requests, folder, env, batches=True, cwd=args.edge_source)
        if "edge-e" in only:
            port = free_port()
            env = {**os.environ, **edge_env(services, root, port, "instructions-e")}
            results["edge-e"] = measure("edge protocol (e)", [python, "-m", "control_plane.cli", "edge"], port,
                                        RULES_REQUEST, args.requests, folder, env, batches=True, cwd=args.edge_source)
        if "edge-cold" in only:
            port = free_port()
            env = {**os.environ, **edge_env(services, root, port, "instructions-cold")}
            results["edge-cold"] = measure("edge protocol (b) first touch", [python, "-m", "control_plane.cli", "edge"],
                                           port, first_touches(), args.requests, folder, env, batches=True,
                                           cwd=args.edge_source)
        if "edge-refresh" in only:
            port = free_port()
            env = {**os.environ, **edge_env(services, root, port, "instructions-refresh"), "EDGE_CACHE_TTL": "1"}
            results["edge-refresh"] = measure("edge protocol (b) refresh", [python, "-m", "control_plane.cli", "edge"],
                                              port, refreshes(warm_up_requests(args.requests)), args.requests,
                                              folder, env, batches=True, cwd=args.edge_source)
    finally:
        services.stop()
        shutil.rmtree(root, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"\nuser-space instructions per request (callgrind; (2N - N) / N, N = {args.requests:,};"
          f" {CONNECTIONS} connections; kernel not counted)")
    print(f"  {'':<46} {'counted':>9} {'w/o idle':>9}")
    names = {"bare": "bare uvicorn ASGI, fixed 302 (reference)", "edge": "edge protocol: (a) hot code, params + phone",
             "edge-e": "edge protocol: (e) as (a), 20 rules + split",
             "edge-cold": "edge protocol: (b) first touch of a code",
             "edge-refresh": "edge protocol: (b) a code again past its TTL"}
    for key, (counted, busy) in results.items():
        print(f"  {names[key]:<46} {counted:>9,.0f} {busy:>9,.0f}")
    if "edge" in results and "bare" in results:
        edge, bare = results["edge"][1], results["bare"][1]
        print(f"  edge (a) / bare uvicorn, without idle work: {edge / bare:.3f} × the instructions"
              f" (throughput ratio if instructions were all: {bare / edge:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

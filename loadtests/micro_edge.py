"""The protocol edge's per-scan CPU work without the network: `ScanHandler.handle` called in a loop on a
cached code, in process CPU time (`python -m loadtests.micro_edge`, BENCHMARKS.md "Edge").

It starts private PostgreSQL and Redis, seeds the codes of `make bench-edge` (a group with params, hot codes
with their own params, a group with 20 rules and a split), starts the edge app in this process and waits
until its local cache may answer. Each scan then goes through everything the protocol server does for a
request it has parsed — target, client address, lookup, visitor, decision, scan event, Location, answer —
except the network: the recorder's batch is acknowledged at once instead of by Redis, so what is measured
is the Python work per scan that precomputation can remove. `--profile` wraps the loop in pyinstrument.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import socket
import statistics
import time
from pathlib import Path
from typing import Any

import redis

from edge.app import EdgeApp
from edge.protocol import HttpConnection, Slot
from edge.recorder import ScanRecorder
from edge.scan_handler import ScanHandler
from edge.server import EdgeServer
from loadtests.bench_edge import HOST, NAMESPACE, PHONE, seed
from shared.embedded import EmbeddedServices, temporary_root
from shared.keys import INVALIDATION_FIELD, NEGATIVE_ENTRIES
from shared.settings import EdgeSettings

HEADERS = {b"host": HOST.encode(), b"user-agent": PHONE.encode(),
           b"accept": b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
           b"accept-language": b"de-DE,de;q=0.9,en;q=0.8", b"accept-encoding": b"gzip, deflate, br"}
CASES = {
    "hot": b"/h1?qr=1&utm_source=bench&utm_content=tbl",  # bench-edge (a)
    "plain": b"/h1?qr=1",  # what a printed code sends
    "rules": b"/r1?qr=1&utm_source=bench&utm_content=tbl",  # bench-edge (e)
    "unknown": b"/u-unknown-slug?qr=1",  # an unknown slug, answered from the local cache's negative entry
}


class _Transport:
    """What HttpConnection needs of a transport; counts the bytes written."""

    def __init__(self) -> None:
        self.written = 0

    def get_extra_info(self, name: str) -> Any:
        return ("198.51.100.23", 40000) if name == "peername" else None

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _Connection:
    """What ScanHandler needs of a connection: the peer, and `fill` for the answer."""

    def __init__(self) -> None:
        self.peer = "198.51.100.23"
        self.answers = 0

    def fill(self, slot: Slot, data: bytes) -> None:
        self.answers += 1


async def _recorder(app: EdgeApp, args: argparse.Namespace) -> list[str]:
    """The recorder alone against the private Redis: batches of scans submitted and awaited, written as RESP on
    the recorder's own connection (edge/scan_stream.py), then through redis-py as before it."""
    event = b'{"code_id":"qr_h1","group_id":"grp_bench","org_id":"org_bench","livemode":true,"properties":{},' \
        + b'"user_agent":"' + PHONE.encode() + b'","scan_id":"0193a4b2-0000-7000-8000-000000000000"}'
    lines = []
    for direct in (True, False):
        app.scan_stream._direct = direct
        recorder = ScanRecorder(app.redis, f"{NAMESPACE}:micro-scans", app.journal, app.link, app.scan_stream)
        for batch in (1, 16, 64):
            per_scan = []
            for _ in range(args.repeats):
                started = time.process_time()
                for _ in range(2048 // batch):
                    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                    left = [batch]

                    def stored(error: BaseException | None, done: asyncio.Future[None] = done,
                               left: list[int] = left) -> None:
                        left[0] -= 1
                        if not left[0]:
                            done.set_result(None)
                    for _ in range(batch):
                        recorder.submit(event, stored)
                    await done
                per_scan.append((time.process_time() - started) / (2048 // batch * batch) * 1e6)
            lines.append(f"recorder {'own RESP' if direct else 'redis-py'}, batches of {batch:>2}: "
                         f"{statistics.median(per_scan):6.2f} µs per scan (median of {args.repeats})")
    app.scan_stream._direct = True
    return lines


async def _misses(app: EdgeApp, handler: ScanHandler, conn: _Connection, args: argparse.Namespace) -> list[str]:
    """Distinct unknown slugs, 64 at a time: ruled out by the filter of existing codes (as the seed built it),
    then with the filter taken away, looked up (a batched MGET, then PostgreSQL)."""
    lines = []
    for with_filter in (True, False):
        if not with_filter:
            client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
            client.delete(app.keys.code_filter)
            client.xadd(app.keys.invalidations, {INVALIDATION_FIELD: NEGATIVE_ENTRIES})
            client.close()
        deadline = time.monotonic() + 30
        while app.code_filter.trusted() != with_filter:
            assert time.monotonic() < deadline, app.metrics.code_filter_state()
            await asyncio.sleep(0.05)
        per_scan = []
        for repeat in range(args.repeats):
            app.fence.until = time.monotonic() + 3600
            started = time.process_time()
            for batch in range(args.misses // 64):
                for n in range(64):
                    url = f"/miss{int(with_filter)}-{repeat}-{batch}-{n}?qr=1".encode()
                    handler.handle(conn, Slot(False), b"GET", url, HEADERS, b"")  # type: ignore[arg-type]
                await _read(app, handler)
            per_scan.append((time.process_time() - started) / (args.misses // 64 * 64) * 1e6)
        lines.append(_line("miss", "handler", per_scan, args) + " (each a distinct unknown slug, " + (
            "ruled out by the code filter)" if with_filter else "looked up: no code filter)"))
    return lines


async def _read(app: EdgeApp, handler: ScanHandler) -> None:
    """Until the misses handled so far are read and answered (RowLookup's batches; tasks before them)."""
    while (loader := getattr(app.lookup, "_loader", None)) is not None:
        await loader
    await asyncio.gather(*handler.tasks)


async def _first_touches(app: EdgeApp, handler: ScanHandler, conn: _Connection, args: argparse.Namespace) -> list[str]:
    """Distinct known codes, 64 at a time, none in the local cache but every row warm in Redis: a first touch,
    as most scans of a large catalogue's long tail are (bench-edge (b)). Then the same codes again once their
    entries no longer count as fresh (as past their TTL): a refresh that finds every row unchanged."""
    lines = []
    for name, what in (("cold", "each a distinct known code, its row read from Redis"),
                       ("refresh", "the same codes, their entries stale, their rows unchanged in Redis")):
        per_scan = []
        codes = iter(range(1, args.repeats * args.cold + 1))
        if name == "refresh":
            app.codes.clear()  # nothing cached counts as fresh any more; the entries stay
        for _ in range(args.repeats):
            app.fence.until = time.monotonic() + 3600
            started = time.process_time()
            for _ in range(args.cold // 64):
                for n in itertools.islice(codes, 64):
                    handler.handle(conn, Slot(False), b"GET", f"/z{n}?qr=1".encode(), HEADERS, b"")  # type: ignore[arg-type]
                await _read(app, handler)
            per_scan.append((time.process_time() - started) / (args.cold // 64 * 64) * 1e6)
        lines.append(_line(name, "handler", per_scan, args) + f" ({what})")
    return lines


async def _beyond_the_hit_path(app: EdgeApp, handler: ScanHandler, conn: _Connection,
                               args: argparse.Namespace) -> list[str]:
    lines = []
    if args.cold:
        if args.profile_cold:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0001)
            profiler.start()
        lines.extend(await _first_touches(app, handler, conn, args))
        if args.profile_cold:
            profiler.stop()
            lines.append(profiler.output_text(unicode=True, color=False, show_all=False))
    if args.misses:
        lines.extend(await _misses(app, handler, conn, args))
    if args.recorder:
        lines.extend(await _recorder(app, args))
    return lines


def _line(case: str, how: str, per_scan: list[float], args: argparse.Namespace) -> str:
    return (f"{case:<8} {how:<8} {statistics.median(per_scan):6.2f} µs per scan (median of {args.repeats} × "
            f"{args.scans:,}; min {min(per_scan):.2f}, max {max(per_scan):.2f})")


def _request(url: bytes) -> bytes:
    return b"GET " + url + b" HTTP/1.1\r\n" + b"".join(k.title() + b": " + v + b"\r\n" for k, v in HEADERS.items()) \
        + b"\r\n"


def _acknowledge_at_once(event: bytes, stored: Any) -> None:
    stored(None)


async def run(args: argparse.Namespace, services: EmbeddedServices, root: str) -> list[str]:
    env = {"DATABASE_URL": services.database_url, "REDIS_URL": services.redis_url, "REDIS_NAMESPACE": NAMESPACE,
           "DEFAULT_DOMAIN": HOST, "SCAN_HASH_SECRET": "bench-secret-0123456789",
           "EDGE_JOURNAL_DIR": f"{root}/journal"}
    os.environ.update(env)
    app = EdgeApp(EdgeSettings.from_env())
    await app.startup()
    lines = []
    try:
        while app.fence.until <= time.monotonic():
            await asyncio.sleep(0.05)
        server = EdgeServer(app, socket.socket())
        handler = server.handler
        app.recorder.submit = _acknowledge_at_once  # type: ignore[method-assign]
        conn = _Connection()
        for case in args.cases:
            url = CASES[case]
            await app.lookup.find(HOST, url[1:].partition(b"?")[0].decode())  # into the local cache (or negative)
            per_scan = []
            for _ in range(args.repeats):
                app.fence.until = time.monotonic() + 3600  # the follower is not needed for this measurement
                await app.lookup.find(HOST, url[1:].partition(b"?")[0].decode())
                started = time.process_time()
                for _ in range(args.scans):
                    handler.handle(conn, Slot(False), b"GET", url, HEADERS, b"")  # type: ignore[arg-type]
                per_scan.append((time.process_time() - started) / args.scans * 1e6)
            lines.append(_line(case, "handler", per_scan, args))
        lines.extend(await _beyond_the_hit_path(app, handler, conn, args))
        for case in args.cases:  # the same through the connection: parsing, the answer's order, the write
            request = _request(CASES[case])
            connection = HttpConnection(server)
            transport = _Transport()
            connection.connection_made(transport)  # type: ignore[arg-type]
            per_scan = []
            for _ in range(args.repeats):
                app.fence.until = time.monotonic() + 3600
                await app.lookup.find(HOST, CASES[case][1:].partition(b"?")[0].decode())  # a negative entry expires
                started = time.process_time()
                for _ in range(args.scans):
                    connection.data_received(request)
                per_scan.append((time.process_time() - started) / args.scans * 1e6)
            assert transport.written, f"{case}: no answer written"
            lines.append(_line(case, "server", per_scan, args))
        if args.profile:
            from pyinstrument import Profiler

            url = CASES[args.profile]
            profiler = Profiler(interval=0.0001)
            connection = HttpConnection(server)
            connection.connection_made(_Transport())  # type: ignore[arg-type]
            request = _request(url)
            profiler.start()
            for _ in range(args.scans):
                connection.data_received(request)
            profiler.stop()
            lines.append(profiler.output_text(unicode=True, color=False, show_all=False))
        for case in args.calls:
            app.fence.until = time.monotonic() + 3600
            await app.lookup.find(HOST, CASES[case][1:].partition(b"?")[0].decode())  # into the local cache
            lines.extend(_calls(server, case, args.scans))
    finally:
        await app.shutdown()
    return lines


def _calls(server: EdgeServer, case: str, scans: int) -> list[str]:
    """Python-level calls per scan through the connection, by function (cProfile's counts, not its times): what
    a case adds to another in calls, the unit of CPython's cost that callgrind's totals do not name."""
    import cProfile
    import pstats

    connection = HttpConnection(server)
    connection.connection_made(_Transport())  # type: ignore[arg-type]
    request = _request(CASES[case])
    connection.data_received(request)  # memos filled
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(scans):
        connection.data_received(request)
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    counts = sorted(((calls / scans, f"{Path(file).name}:{line} {name}") for (file, line, name), (_, calls, *_)
                     in stats.items()), reverse=True)
    total = sum(n for n, _ in counts)
    return [f"{case}: {total:.1f} calls per scan", *(f"  {n:5.2f}  {where}" for n, where in counts if n >= 0.01)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scans", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--recorder", action="store_true", help="also the recorder alone, both ways")
    parser.add_argument("--misses", type=int, default=0, help="also this many distinct unknown slugs per repeat")
    parser.add_argument("--cold", type=int, default=0, help="also this many first touches of known codes per repeat")
    parser.add_argument("--profile-cold", action="store_true", help="profile the first touches with pyinstrument")
    parser.add_argument("--profile", choices=list(CASES), help="profile this case with pyinstrument")
    parser.add_argument("--calls", nargs="*", default=[], choices=list(CASES),
                        help="count Python calls per scan of these cases, by function (cProfile)")
    args = parser.parse_args()
    root = temporary_root("scanroute-micro-")
    services = EmbeddedServices(root, persistent=False)
    services.start()
    os.environ["BENCH_REDIS_URL"] = services.redis_url
    try:
        import uvloop

        uvloop.run(seed(services.database_url, max(1000, args.repeats * args.cold)))
        print("\n".join(uvloop.run(run(args, services, str(root)))))
    finally:
        services.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

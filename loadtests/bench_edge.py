"""`make bench-edge`: the edge's throughput and latency as ratios to a bare uvicorn 302, measured in one run.

Every server under test runs pinned to CPU 0; wrk, the fixed-rate client, PostgreSQL and Redis run on
CPU 1 (start this script under `taskset -c 1` so the private servers it starts inherit that CPU). The
pinning actually applied is read back with `taskset -p` and printed. Other work on the machine moves every
figure, so only the ratios measured in the same run mean much; the rounds alternate the servers so that a
burst of load from elsewhere hits all of them alike, and the spread of each ratio over the rounds is
printed next to it.

References (fixed 302, no work): bare uvicorn ASGI (1.0), a raw uvloop + httptools protocol, granian RSGI
(when installed: `pip install -e ".[load]"`), nginx `return 302` (nginx-light, installed when missing).
The edge, as its protocol server (`scanroute edge`) and as the ASGI app under uvicorn
(`scanroute edge --server asgi`), on
  (a) one hot code: group + code + visitor params, a phone's headers;
  (b) --codes codes with Zipf(1.1) popularity, their rows warm in Redis, the local cache cold at the
      start (the first window after start-up is reported separately as "first touch"); in each round the
      window right after the idle gap the other servers' rounds leave (longer than EDGE_CACHE_TTL, so every
      cached code is refreshed) is reported apart too, as "after an idle gap", before the measured window on
      another Zipf sequence;
  (c) as (b) with 10 % of the requests for unknown slugs, all distinct — with the filter of existing codes
      (docs/freshness.md), as the control plane's cache sync keeps it, and once more without it (the
      lookups an edge falls back to while the filter is missing or not trusted);
  (e) as (a), but the code's group has 20 rules (every condition type, none matching) and a split
      (docs/rules.md): the budget is (e)/(a) ≥ 0.9, judged per round.
Then p99 at 64 connections at 80 % of each server's measured maximum (--latency-at: other shares too; an
open-loop client in C, loadtests/fixed_rate.c, built at run time) with the machine's kernel threads that ran
for long stretches meanwhile (/proc/<pid>/schedstat), and the edge's RSS after --flood distinct unknown slugs
on ~200-byte hosts, with the filter and then without it.
Every scan is acknowledged by Redis (group-committed XADD) before its answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import importlib.util
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import msgspec.structs
import orjson
import redis
import redis.asyncio as aioredis
from pydantic import TypeAdapter

from control_plane.cli.migrate import migrate
from control_plane.services.cache import EdgeCache
from control_plane.services.cache_sync import CacheSync
from loadtests import fixed_rate
from shared.edge_rows import load_code_by_slug, load_groups
from shared.embedded import EmbeddedServices, free_port, temporary_root
from shared.keys import INVALIDATION_FIELD, NEGATIVE_ENTRIES, RedisKeys, cache_sync_cursor
from shared.processes import spawn, stop
from shared.rules import Rules, Split, dump_rules, dump_split

SERVER_CPU, LOAD_CPU = "0", "1"
HOST = "bench.test"
NAMESPACE = "bench"
HERE = Path(__file__).resolve().parent
UVICORN_FLAGS = ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
                 "--backlog", "4096"]
PHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
         " Version/17.5 Mobile/15E148 Safari/604.1")
HOT_REQUEST = (f"GET /h1?qr=1&utm_source=bench&utm_content=tbl HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: {PHONE}\r\n"
               "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
               "Accept-Language: de-DE,de;q=0.9,en;q=0.8\r\nAccept-Encoding: gzip, deflate, br\r\n\r\n").encode()
TARGETS = {"edge-a": 1.0, "edge-b": 0.7}


@dataclass(frozen=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    bad: int  # answers other than 2xx/3xx, and socket errors
    requests: int
    missed: float | None = None  # an edge's: the share of requests its local code cache could not answer


def find_or_install(tool: str, package: str | None = None) -> str | None:
    def found() -> str | None:
        return shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}", f"/usr/bin/{tool}") if Path(p).exists()),
                                          None)

    if found() or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found()
    print(f"installing {package or tool} with apt-get", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", package or tool], check=False, timeout=600,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, stdout=subprocess.DEVNULL)
    return found()


def _milliseconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def run_wrk(wrk: str, url: str, seconds: int, connections: int, script: str | None = None,
            env: dict[str, str] | None = None) -> Result:
    argv = ["taskset", "-c", LOAD_CPU, wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
            "--timeout", "5s", "-H", f"Host: {HOST}", *(["-s", script] if script else []), url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 180,
                         env={**os.environ, **(env or {})}).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _milliseconds(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _milliseconds(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    bad += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return Result(rps, p50, p99, bad, requests)


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pinning(self) -> str:
        return _taskset(self.process.pid)

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def _taskset(pid: int) -> str:
    return subprocess.run(["taskset", "-p", str(pid)], capture_output=True, text=True, timeout=10).stdout.strip()


@contextmanager
def serving(name: str, argv: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[Server]:
    process = spawn(["taskset", "-c", SERVER_CPU, *argv], env={**os.environ, **(env or {})})
    try:
        wait_listening(port, process)
        time.sleep(0.5)  # let start-up work (cache follower, pools) settle
        yield Server(name, port, process)
    finally:
        stop(process, signal.SIGTERM)


@contextmanager
def nginx(binary: str, port: int) -> Iterator[Server]:
    folder = Path(tempfile.mkdtemp(prefix="scanroute-nginx-"))
    (folder / "nginx.conf").write_text(
        f"worker_processes 1; daemon off; pid {folder}/nginx.pid; error_log {folder}/error.log;\n"
        f"events {{ worker_connections 4096; }}\n"
        # Keep-alive connections live as long as the client's (nginx closes one after 1,000 requests by
        # default, which the open-loop client counts as unanswered requests).
        f"http {{ access_log off; keepalive_requests 100000000; client_body_temp_path {folder};\n"
        f"  proxy_temp_path {folder};\n"
        f"  fastcgi_temp_path {folder}; uwsgi_temp_path {folder}; scgi_temp_path {folder};\n"
        f"  server {{ listen 127.0.0.1:{port}; location / {{ return 302 https://example.com/menu; }} }} }}\n")
    try:
        with serving("nginx", [binary, "-p", str(folder), "-c", str(folder / "nginx.conf")], port) as server:
            yield server
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def seed(database_url: str, codes: int) -> None:
    """An organisation, a group with params, one hot code with its own params, and `codes` more (COPY)."""
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        await migrate(conn)
        await conn.execute("INSERT INTO organisations (id, name) VALUES ('org_bench', 'bench')")
        await conn.execute(
            "INSERT INTO qr_groups (id, org_id, livemode, destination_type, destination_url)"
            " VALUES ('grp_bench', 'org_bench', true, 'url', 'https://example.com/menu?lang=en#top')")
        await conn.executemany("INSERT INTO qr_group_url_params (group_id, key, value) VALUES ('grp_bench', $1, $2)",
                               [("utm_campaign", "fall24"), ("utm_medium", "print")])
        await conn.execute(
            "INSERT INTO qr_codes (id, org_id, livemode, kind, type, slug, domain, group_id)"
            " SELECT 'qr_h' || g, 'org_bench', true, 'dynamic', 'url', 'h' || g, $1, 'grp_bench'"
            " FROM generate_series(1, 100) g", HOST)
        await conn.execute("INSERT INTO qr_code_url_params (code_id, key, value)"
                           " SELECT 'qr_h' || g, 'utm_medium', 'table' FROM generate_series(1, 100) g")
        await conn.copy_records_to_table(
            "qr_codes", columns=["id", "org_id", "livemode", "kind", "type", "slug", "domain", "group_id"],
            records=((f"qr_z{n}", "org_bench", True, "dynamic", "url", f"z{n}", HOST, "grp_bench")
                     for n in range(1, codes + 1)))
        await seed_rules(conn)
        await warm_redis(conn, codes)
    finally:
        await conn.close()
    await build_code_filter(database_url)
    await settle(database_url)


async def settle(database_url: str) -> None:
    """Leave nothing of the seed for the disk to do while the servers are measured.

    A million fresh rows are work the machine would otherwise do in the middle of the rounds: the first
    reads of each row set its hint bits (dirtying its page again), autovacuum visits the table once the
    inserts cross its threshold, a checkpoint spreads the writes over minutes, and the kernel's flusher
    writes the dirty page cache back (a writeback kworker ran 0.7–1.2 s during the latency phase of earlier
    runs, on the bench's core). VACUUM (FREEZE, ANALYZE) does the first two now, CHECKPOINT and sync(2)
    the rest, before anything is timed."""
    started = time.monotonic()
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        for table in ("qr_codes", "qr_code_url_params", "qr_groups", "qr_group_url_params"):
            await conn.execute(f"VACUUM (FREEZE, ANALYZE) {table}", timeout=600)
        await conn.execute("CHECKPOINT", timeout=600)
    finally:
        await conn.close()
    os.sync()
    print(f"settled (VACUUM FREEZE, CHECKPOINT, sync) in {time.monotonic() - started:.1f} s", flush=True)


SAVED_FILTER = f"{NAMESPACE}:bench:filter-saved"


async def build_code_filter(database_url: str) -> None:
    """What the control plane's cache sync does on a Redis without a filter: set its cursor, build the filter
    of existing codes from PostgreSQL. A copy is kept aside, so that scenarios can run with and without it."""
    client = aioredis.Redis.from_url(os.environ["BENCH_REDIS_URL"], socket_timeout=120)
    db = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        sync = CacheSync(db, EdgeCache(client, RedisKeys(NAMESPACE)), NAMESPACE)
        await sync.run_once()
        started = time.monotonic()
        assert await sync.code_filter.rebuild("bench seed")
        size = await client.strlen(RedisKeys(NAMESPACE).code_filter)
        print(f"code filter built in {time.monotonic() - started:.1f} s: {size / 2**20:.2f} MB", flush=True)
        await client.copy(RedisKeys(NAMESPACE).code_filter, SAVED_FILTER, replace=True)
        assert await client.get(cache_sync_cursor(NAMESPACE)) is not None
    finally:
        await db.close()
        await client.aclose()


def set_code_filter(on: bool, edges: list[Server]) -> None:
    """Put the filter in Redis (or take it away) and announce it as a creation does; wait until every edge
    believes it (or has stopped believing it)."""
    keys = RedisKeys(NAMESPACE)
    client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"], socket_timeout=60)
    try:
        if on:
            client.copy(SAVED_FILTER, keys.code_filter, replace=True)
        else:
            client.delete(keys.code_filter)
        client.xadd(keys.invalidations, {INVALIDATION_FIELD: NEGATIVE_ENTRIES})
    finally:
        client.close()
    deadline = time.monotonic() + 30
    for edge in edges:
        while (code_filter_state(edge) == "trusted") != on:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{edge.name}: code filter still {code_filter_state(edge)!r}")
            time.sleep(0.05)


def code_filter_state(edge: Server) -> str:
    ready = subprocess.run(["curl", "-s", f"{edge.url}/readyz"], capture_output=True, timeout=30).stdout
    return str((orjson.loads(ready).get("code_filter") or {}).get("state"))


# Five kinds of condition, four times over: the benchmark's visitor (an iPhone in German, no country) reaches
# the split only after evaluating all twenty.
BENCH_RULES = [{"country": ["DE"]}, {"device": ["android"]}, {"language": ["fr"]},
               {"weekday": ["sun"], "time": {"from": "22:00", "to": "02:00"}, "timezone": "Europe/Berlin"},
               {"ip": ["10.0.0.0/8"], "query": {"src": "flyer"}}] * 4


async def seed_rules(conn: asyncpg.Connection[Any]) -> None:
    """100 hot codes like (a)'s, in a group with 20 rules and a split."""
    rules = dump_rules(TypeAdapter(Rules).validate_python(
        [{"if": c, "destination": {"type": "url", "url": f"https://example.com/rule{n}"}}
         for n, c in enumerate(BENCH_RULES)]))
    split = dump_split(TypeAdapter(Split).validate_python(
        [{"weight": 50, "destination": {"type": "url", "url": f"https://example.com/{v}?lang=en"}} for v in "ab"]))
    await conn.execute(
        "INSERT INTO qr_groups (id, org_id, livemode, destination_type, destination_url, rules, split)"
        " VALUES ('grp_rules', 'org_bench', true, 'url', 'https://example.com/menu?lang=en#top', $1, $2)",
        orjson.dumps(rules).decode(), orjson.dumps(split).decode())
    await conn.executemany("INSERT INTO qr_group_url_params (group_id, key, value) VALUES ('grp_rules', $1, $2)",
                           [("utm_campaign", "fall24"), ("utm_medium", "print")])
    await conn.execute(
        "INSERT INTO qr_codes (id, org_id, livemode, kind, type, slug, domain, group_id)"
        " SELECT 'qr_r' || g, 'org_bench', true, 'dynamic', 'url', 'r' || g, $1, 'grp_rules'"
        " FROM generate_series(1, 100) g", HOST)
    await conn.execute("INSERT INTO qr_code_url_params (code_id, key, value)"
                       " SELECT 'qr_r' || g, 'utm_medium', 'table' FROM generate_series(1, 100) g")


async def warm_redis(conn: asyncpg.Connection[Any], codes: int) -> None:
    """Every code's edge row in Redis, as the control plane's write-through leaves them."""
    template = await load_code_by_slug(conn, HOST, "z1")
    hot = await load_code_by_slug(conn, HOST, "h1")
    group = (await load_groups(conn, ["grp_bench"]))["grp_bench"]
    assert template is not None and hot is not None
    keys = RedisKeys(NAMESPACE)
    client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"], socket_timeout=30)
    try:
        client.set(keys.group(group.id), group.encode())
        client.set(keys.code(HOST, "h1"), hot.encode())
        for start in range(1, codes + 1, 10_000):
            pipe = client.pipeline(transaction=False)
            for n in range(start, min(codes, start + 9_999) + 1):
                pipe.set(keys.code(HOST, f"z{n}"), msgspec.structs.replace(template, id=f"qr_z{n}").encode())
            pipe.execute()
    finally:
        client.close()


def measure_emptied(wrk: str, args: argparse.Namespace, **kwargs: Any) -> Result:
    """run_wrk with the bench's seconds and connections (unless given), on an empty scan stream."""
    empty_scan_stream()
    return run_wrk(wrk, **{"seconds": args.seconds, "connections": args.connections, **kwargs})


def empty_scan_stream() -> None:
    """No ingest worker reads the scan stream here: empty it before each measurement, so that it never reaches
    SCAN_STREAM_MAX_ENTRIES (past which the edge sheds scans with 503s, docs/edge.md) — the edge still runs
    its limit check on every batch, as in production."""
    client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"], socket_timeout=60)
    try:
        client.delete(RedisKeys(NAMESPACE).scans)
    finally:
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5, help="measured seconds per scenario and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of all scenarios, alternating")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--codes", type=int, default=1_000_000, help="codes with Zipf popularity in (b), (c)")
    parser.add_argument("--flood", type=int, default=1_000_000, help="distinct unknown slugs for the RSS check")
    parser.add_argument("--latency-seconds", type=int, default=10, help="seconds at each share of the maximum rate")
    parser.add_argument("--latency-rounds", type=int, default=3, help="rounds of the latency phase, alternating")
    parser.add_argument("--latency-at", default="0.8", help="comma-separated shares of each server's maximum rate"
                        " to measure the latency at (e.g. 0.5,0.6,0.7,0.8: where does p99 cross 5 ms?)")
    parser.add_argument("--only", default="", help="comma-separated scenario keys to measure (e.g. ref,protocol-a;"
                        " default all), for a quick look while working; skips the first touch, latency and flood"
                        " unless their scenarios are named (protocol-b, latency, flood)")
    args = parser.parse_args()
    wrk = find_or_install("wrk")
    if wrk is None:
        print("wrk is missing: install it (Debian/Ubuntu: apt-get install wrk), or run this as root")
        return 1
    nginx_binary = find_or_install("nginx", "nginx-light")
    print(f"open-loop client: {fixed_rate.build()}", flush=True)  # fails now, not after the rounds, without cc
    print(f"bench script (wrk, fixed-rate client, PostgreSQL, Redis inherit it): {_taskset(os.getpid())}")
    root = temporary_root("scanroute-bench-")
    services = EmbeddedServices(root, persistent=False)
    services.start()
    os.environ["BENCH_REDIS_URL"] = services.redis_url
    try:
        print(f"seeding {args.codes:,} codes in PostgreSQL and Redis …", flush=True)
        started = time.monotonic()
        asyncio.run(seed(services.database_url, args.codes))
        print(f"seeded in {time.monotonic() - started:.1f} s", flush=True)
        report = measure_all(wrk, services, root, args, nginx_binary)
    finally:
        services.stop()
        shutil.rmtree(root, ignore_errors=True)
    print("\n".join(report))
    return 0


def edge_env(services: EmbeddedServices, root: Path, port: int, name: str) -> dict[str, str]:
    return {"DATABASE_URL": services.database_url, "REDIS_URL": services.redis_url, "REDIS_NAMESPACE": NAMESPACE,
            "EDGE_BIND": f"127.0.0.1:{port}", "DEFAULT_DOMAIN": HOST, "SCAN_HASH_SECRET": "bench-secret-0123456789",
            "EDGE_JOURNAL_DIR": str(root / f"journal-{name}")}


def start_servers(stack: contextlib.ExitStack, services: EmbeddedServices, root: Path,
                  nginx_binary: str | None) -> dict[str, Server]:
    python = sys.executable

    def start(name: str, argv: list[str], port: int, env: dict[str, str] | None = None) -> Server:
        return stack.enter_context(serving(name, argv, port, env))

    port = free_port()
    servers = {"bare": start("bare uvicorn", [python, "-m", "uvicorn", "loadtests.bare_redirect:app", "--port",
                                              str(port), *UVICORN_FLAGS], port)}
    port = free_port()
    servers["raw"] = start("raw uvloop+httptools", [python, "-m", "loadtests.raw_redirect", str(port)], port)
    if importlib.util.find_spec("granian"):
        port = free_port()
        servers["granian"] = start("granian RSGI", [
            python, "-m", "granian", "--interface", "rsgi", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--no-ws", "loadtests.granian_redirect:app"], port)
    if nginx_binary:
        servers["nginx"] = stack.enter_context(nginx(nginx_binary, free_port()))
    for kind, extra in (("protocol", []), ("asgi", ["--server", "asgi"])):
        port = free_port()
        servers[kind] = start(f"edge {kind}", [python, "-m", "control_plane.cli", "edge", *extra], port,
                              edge_env(services, root, port, kind))
    return servers


def measure_all(wrk: str, services: EmbeddedServices, root: Path, args: argparse.Namespace,
                nginx_binary: str | None) -> list[str]:
    measure = functools.partial(measure_emptied, wrk, args)
    lines: list[str] = []
    with contextlib.ExitStack() as stack:
        servers = start_servers(stack, services, root, nginx_binary)
        lines.append("\npinning read back with taskset -p (server: pid's affinity):")
        lines.extend(f"  {s.name:<22} {s.pinning()}" for s in servers.values())

        scenarios = build_scenarios(servers, args)
        only = set(filter(None, args.only.split(",")))
        if only:
            scenarios = {key: s for key, s in scenarios.items() if key in only or key == "ref"}
        edges = [servers["protocol"], servers["asgi"]]
        filter_on = True
        set_code_filter(filter_on, edges)

        def run(scenario: dict[str, Any], **extra: Any) -> Result:
            nonlocal filter_on
            if scenario.get("filter", True) != filter_on:
                filter_on = not filter_on
                set_code_filter(filter_on, edges)
            edge = next((e for e in edges if e.url == scenario["url"]), None)
            before = edge_metrics(edge)[LOOKUPS] if edge else 0.0
            result = measure(**{k: v for k, v in scenario.items() if k not in ("name", "filter")}, **extra)
            if edge is None:
                return result
            return dataclasses.replace(result, missed=(edge_metrics(edge)[LOOKUPS] - before) / result.requests)

        # First touch: the Zipf load on a local cache that has seen nothing (Redis rows warm).
        first_touch = {kind: run({k: v for k, v in scenarios[f"{kind}-b"].items() if k != "zipf"})
                       for kind in ("protocol", "asgi") if f"{kind}-b" in scenarios}
        for key, scenario in scenarios.items():
            if not key.endswith("-b"):
                run({k: v for k, v in scenario.items() if k != "zipf"}, seconds=2)  # warm-up
        rounds, after_gap = run_rounds(scenarios, run, args)
        lines.extend(throughput_report(scenarios, rounds, after_gap, first_touch, args))
        if not only or "latency" in only:
            lines.extend(latency_report(servers, rounds, args))
        if not only or "flood" in only:
            for on in (True, False):
                set_code_filter(on, edges)
                lines.extend(flood_report(wrk, servers["protocol"], args, on))
    return lines


def run_rounds(scenarios: dict[str, dict[str, Any]], run: Callable[..., Result], args: argparse.Namespace,
               ) -> tuple[dict[str, list[Result]], dict[str, list[Result]]]:
    """--rounds rounds of every scenario, alternating; and for each Zipf scenario, the window after its gap.

    Between two rounds of a Zipf scenario the other servers' rounds leave its edge idle for longer than
    EDGE_CACHE_TTL, so every code it had cached is past its TTL when the round starts: a continuously loaded
    edge refreshes a code once per TTL, not once per round. Each round therefore runs a Zipf scenario twice,
    on different Zipf sequences: a window right after the gap (reported apart, as "after an idle gap"), then
    the measured one."""
    rounds: dict[str, list[Result]] = {key: [] for key in scenarios}
    after_gap: dict[str, list[Result]] = {key: [] for key, s in scenarios.items() if s.get("zipf")}
    for number in range(args.rounds):
        print(f"round {number + 1}/{args.rounds}", flush=True)
        for key, scenario in scenarios.items():
            plain = {k: v for k, v in scenario.items() if k not in ("env", "zipf")}
            env = {**scenario.get("env", {}), "RUN_ID": f"r{number}"}
            if key in after_gap:
                after_gap[key].append(run(plain, env={**env, "RUN_ID": f"g{number}", "ZIPF_SEED": str(1000 + number)}))
                env["ZIPF_SEED"] = str(2000 + number)
            rounds[key].append(run(plain, env=env))
    return rounds, after_gap


def build_scenarios(servers: dict[str, Server], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    hot, zipf = str(HERE / "hot.lua"), str(HERE / "zipf.lua")
    zipf_env = {"ZIPF_N": str(args.codes), "ZIPF_S": "1.1"}
    scenarios: dict[str, dict[str, Any]] = {
        "ref": {"name": "bare uvicorn ASGI, fixed 302 (reference)", "url": servers["bare"].url},
        "raw": {"name": "raw uvloop + httptools, fixed 302", "url": servers["raw"].url},
    }
    if "granian" in servers:
        scenarios["granian"] = {"name": "granian RSGI, fixed 302", "url": servers["granian"].url}
    if "nginx" in servers:
        scenarios["nginx"] = {"name": "nginx return 302", "url": servers["nginx"].url}
    for kind in ("protocol", "asgi"):
        url = servers[kind].url
        scenarios[f"{kind}-a"] = {"name": f"edge {kind}: (a) hot code, params + phone", "url": url,
                                  "script": hot}
        scenarios[f"{kind}-b"] = {"name": f"edge {kind}: (b) {args.codes:,} codes, Zipf 1.1", "url": url,
                                  "script": zipf, "env": zipf_env, "zipf": True}
        scenarios[f"{kind}-c"] = {"name": f"edge {kind}: (c) as (b), 10 % unknown", "url": url,
                                  "script": zipf, "env": {**zipf_env, "UNKNOWN_SHARE": "0.1"}, "zipf": True}
        scenarios[f"{kind}-c-nofilter"] = {"name": f"edge {kind}: (c) without the code filter", "url": url,
                                           "script": zipf, "env": {**zipf_env, "UNKNOWN_SHARE": "0.1"},
                                           "filter": False, "zipf": True}
        scenarios[f"{kind}-e"] = {"name": f"edge {kind}: (e) as (a), 20 rules + split", "url": url,
                                  "script": hot, "env": {"HOT_PREFIX": "r"}}
    return scenarios


def throughput_report(scenarios: dict[str, dict[str, Any]], rounds: dict[str, list[Result]],
                      after_gap: dict[str, list[Result]], first_touch: dict[str, Result],
                      args: argparse.Namespace) -> list[str]:
    lines = [f"\n{args.connections} connections, {args.rounds} alternating rounds of {args.seconds} s; "
             f"{os.cpu_count()} CPUs, {os.uname().machine}, Python {sys.version.split()[0]}; medians of the rounds,"
             " ratio = median of per-round ratios to the reference, spread = half the range of those ratios",
             "missed = the share of an edge's requests that its local code cache could not answer (a first touch,"
             " an entry past its TTL, or a lookup of an unknown slug), median of the rounds",
             f"{'scenario':<48} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'ratio':>6} {'spread':>7} {'missed':>7}"]
    reference = rounds["ref"]
    ratios: dict[str, list[float]] = {}
    for key, results in rounds.items():
        per_round = [r.rps / a.rps for r, a in zip(results, reference, strict=True)]
        ratios[key] = per_round
        bad = sum(r.bad for r in results)
        lines.append(f"{scenarios[key]['name']:<48} {statistics.median(r.rps for r in results):>9,.0f} "
                     f"{statistics.median(r.p50_ms for r in results):>7.2f} "
                     f"{statistics.median(r.p99_ms for r in results):>7.2f} {statistics.median(per_round):>6.2f} "
                     f"{(max(per_round) - min(per_round)) / 2:>7.2f}{_missed(results):>8}"
                     + (_bad(key, bad) if bad else ""))
    for key, results in after_gap.items():
        per_round = [r.rps / a.rps for r, a in zip(results, reference, strict=True)]
        kind, case = key.split("-", 1)
        label = {"b": "(b)", "c": "(c)", "c-nofilter": "(c) no filter,"}[case]
        lines.append(f"{'edge ' + kind + ': ' + label + ' after idle gap':<48} "
                     f"{statistics.median(r.rps for r in results):>9,.0f} "
                     f"{statistics.median(r.p50_ms for r in results):>7.2f} "
                     f"{statistics.median(r.p99_ms for r in results):>7.2f} {statistics.median(per_round):>6.2f} "
                     f"{(max(per_round) - min(per_round)) / 2:>7.2f}{_missed(results):>8}  (the round's first"
                     f" {args.seconds} s, its cached codes past EDGE_CACHE_TTL)")
    reference_rps = statistics.median(r.rps for r in reference)
    for kind, result in first_touch.items():
        lines.append(f"{'edge ' + kind + ': (b) first touch, cold local cache':<48} {result.rps:>9,.0f} "
                     f"{result.p50_ms:>7.2f} {result.p99_ms:>7.2f} {result.rps / reference_rps:>6.2f}"
                     f"{'':>8}{_missed([result]):>8}  (first {args.seconds} s after start-up, against the reference's"
                     " median)")
    lines.append("")
    for kind in ("protocol", "asgi"):
        for scenario, target in (("a", 1.0), ("b", 0.7)):
            if f"{kind}-{scenario}" not in ratios:
                continue
            values = ratios[f"{kind}-{scenario}"]
            median, spread = statistics.median(values), (max(values) - min(values)) / 2
            verdict = "met" if median >= target else "missed"
            lines.append(f"edge {kind} ({scenario}) / bare uvicorn = {median:.2f} ± {spread:.2f} "
                         f"(target ≥ {target}: {verdict}; margin {median - target:+.2f}"
                         f"{', larger than the spread' if abs(median - target) > spread else ', within the spread'})")
        for c_key, label in ((f"{kind}-c", "(c)"), (f"{kind}-c-nofilter", "(c) without the code filter")):
            if f"{kind}-b" in ratios and c_key in ratios:
                per_round = [c / b for c, b in zip(ratios[c_key], ratios[f"{kind}-b"], strict=True)]
                lines.append(f"edge {kind} {label} / (b) = {statistics.median(per_round):.2f} ± "
                             f"{(max(per_round) - min(per_round)) / 2:.2f} (unknown slugs cost no more than known"
                             " ones: ≥ 1.0)")
        if f"{kind}-e" not in rounds or f"{kind}-a" not in rounds:
            continue
        with_rules = [e.rps / a.rps for e, a in zip(rounds[f"{kind}-e"], rounds[f"{kind}-a"], strict=True)]
        lines.append(f"edge {kind} (e) / (a) = {statistics.median(with_rules):.2f} ± "
                     f"{(max(with_rules) - min(with_rules)) / 2:.2f} (20 rules + split within 10 %: ≥ 0.90)")
    return lines


def _missed(results: list[Result]) -> str:
    shares = [r.missed for r in results if r.missed is not None]
    return f"{statistics.median(shares):.1%}" if shares else ""


def _bad(key: str, count: int) -> str:
    return f"  ({count} non-3xx: the unknown slugs' 404s, and errors)" if "-c" in key else \
        f"  ({count} bad answers)"


def latency_report(servers: dict[str, Server], rounds: dict[str, list[Result]], args: argparse.Namespace) -> list[str]:
    """p99 at each --latency-at share (80 % by default) of each server's measured maximum with the open-loop C
    client (loadtests/fixed_rate.c), in --latency-rounds rounds alternating the servers; the median of the
    rounds, and their range. With several shares, the highest at which each server's p99 stayed under 5 ms."""
    shares = sorted({float(share) for share in args.latency_at.split(",")})
    lines = [f"\nlatency at {', '.join(f'{share:.0%}' for share in shares)} of each server's measured maximum (median"
             f" req/s of its rounds above), {args.connections} connections, {args.latency_rounds} alternating rounds of"
             f" {args.latency_seconds} s, open loop (loadtests/fixed_rate.c: each connection one request at a time, as"
             " wrk2; latency counted from when each request was due); medians of the rounds [lowest–highest p99];"
             " stalls/s: answers over 4 ms right after one under 2 ms, per second (loadtests/fixed_rate.py, `stalls`)",
             f"{'server':<40} {'load':>5} {'offered':>9} {'achieved':>9} {'p50 ms':>7} {'p99 ms':>7} {'p99.9':>7}"
             f" {'stalls/s':>8}  p99 range"]
    # nginx and the raw protocol, when measured, show what this machine's tails are without Python or Redis.
    chosen = [(key, servers[kind], name) for key, kind, name in (
        ("nginx", "nginx", "nginx return 302"), ("raw", "raw", "raw uvloop + httptools, fixed 302"),
        ("ref", "bare", "bare uvicorn, fixed 302"), ("protocol-a", "protocol", "edge protocol, (a) hot code"),
        ("asgi-a", "asgi", "edge asgi, (a) hot code")) if key in rounds]
    cases = [(key, share) for key, _, _ in chosen for share in shares]
    results: dict[tuple[str, float], list[fixed_rate.Latencies]] = {case: [] for case in cases}
    stalls: dict[tuple[str, float], list[float]] = {case: [] for case in cases}
    trace = Path(tempfile.gettempdir()) / f"scanroute-latency-{os.getpid()}"
    rates = {(key, share): share * statistics.median(r.rps for r in rounds[key]) for key, share in cases}
    kernel_before, started = kernel_threads(), time.monotonic()
    for number in range(args.latency_rounds):
        print(f"latency round {number + 1}/{args.latency_rounds}", flush=True)
        for share in shares:
            for key, server, _ in chosen:
                empty_scan_stream()
                results[key, share].append(fixed_rate.measure(
                    "127.0.0.1", server.port, HOT_REQUEST, rates[key, share], args.latency_seconds, args.connections,
                    cpu=LOAD_CPU, trace=trace))
                stalls[key, share].append(len(fixed_rate.stalls(trace)) / args.latency_seconds)
    trace.unlink(missing_ok=True)
    under: dict[str, list[float]] = {key: [] for key, _, _ in chosen}
    for key, _, name in chosen:
        for share in shares:
            got = results[key, share]
            bad = sum(r.bad for r in got)
            p99 = [r.p99_ms for r in got]
            if statistics.median(p99) < 5:
                under[key].append(share)
            lines.append(f"{name:<40} {share:>5.0%} {rates[key, share]:>9,.0f}"
                         f" {statistics.median(r.rate for r in got):>9,.0f}"
                         f" {statistics.median(r.p50_ms for r in got):>7.2f} {statistics.median(p99):>7.2f}"
                         f" {statistics.median(r.p999_ms for r in got):>7.2f}"
                         f" {statistics.median(stalls[key, share]):>8.1f}"
                         f"  [{min(p99):.2f}–{max(p99):.2f}]"
                         + (f"  ({bad} bad or unanswered)" if bad else "")
                         + ("  (target p99 < 5 ms: " + ("met" if statistics.median(p99) < 5 else "missed") + ")"
                            if key == "protocol-a" and share == 0.8 else ""))
    if len(shares) > 1:
        lines.append("highest load with a median p99 under 5 ms: " + "; ".join(
            f"{name} {max(under[key]):.0%}" if under[key] else f"{name} none tried"
            for key, _, name in chosen))
    lines.append(kernel_report(kernel_before, kernel_threads(), time.monotonic() - started))
    return lines


PF_KTHREAD = 0x00200000  # in /proc/<pid>/stat's flags: a kernel thread


def kernel_threads() -> dict[str, tuple[int, int]]:
    """Each kernel thread's time on a CPU (ns) and the number of times it ran, from /proc/<pid>/schedstat."""
    found: dict[str, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[6]) & PF_KTHREAD:
                ran, _, times = map(int, (entry / "schedstat").read_text().split())
                found[f"{(entry / 'comm').read_text().strip()}[{entry.name}]"] = (ran, times)
        except (OSError, ValueError, IndexError):  # gone meanwhile, or a kernel without schedstat
            continue
    return found


def kernel_report(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], seconds: float) -> str:
    """The three kernel threads that ran longest meanwhile: a kernel thread is not preempted by the servers or the
    client, and a stall of a few milliseconds on either CPU at 80 % of a server's maximum takes several times as
    long to catch up on (BENCHMARKS.md, 2026-12-01 "kdamond")."""
    ran = sorted(((spent - before.get(name, (0, 0))[0], times - before.get(name, (0, 0))[1], name)
                  for name, (spent, times) in after.items()), reverse=True)
    found = "; ".join(f"{name} {spent / 1e6:,.0f} ms in {times:,} runs ({spent / times / 1e3:,.0f} µs each)"
                      for spent, times, name in ran[:3] if times)
    return f"the kernel threads that ran longest during these {seconds:.0f} s: {found or 'none'}"


ENTRIES, CACHE_BYTES = 'scanroute_edge_cache_entries{kind="code"}', 'scanroute_edge_cache_bytes{kind="code"}'
LOOKUPS, FILTERED = 'scanroute_edge_cache_misses_total{kind="code"}', "scanroute_edge_code_filter_answers_total"
FILTER_BYTES = "scanroute_edge_code_filter_bytes"


def edge_metrics(edge: Server) -> dict[str, float]:
    text = subprocess.run(["curl", "-s", f"{edge.url}/metrics"], capture_output=True, text=True, timeout=30).stdout
    found: dict[str, float] = {}
    for name in (ENTRIES, CACHE_BYTES, LOOKUPS, FILTERED, FILTER_BYTES):
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        found[name] = float(match.group(1)) if match else float("nan")
    return found


def flood_report(wrk: str, edge: Server, args: argparse.Namespace, with_filter: bool) -> list[str]:
    before, metrics_before = edge.rss_mb(), edge_metrics(edge)
    sent, started, run = 0, time.monotonic(), 0
    while sent < args.flood and run < 200:  # bounded: at worst 200 runs of 10 s
        result = run_wrk(wrk, edge.url, 10, args.connections, str(HERE / "flood.lua"),
                         {"RUN_ID": f"f{int(with_filter)}{run}"})
        sent += result.requests
        run += 1
    seconds = time.monotonic() - started
    after, metrics = edge.rss_mb(), edge_metrics(edge)

    def during(name: str) -> float:
        return metrics[name] - metrics_before[name]

    return [f"\nmemory, {'with' if with_filter else 'without'} the code filter: {sent:,} distinct unknown slugs on"
            f" ~200-byte hosts in {seconds:.0f} s ({sent / seconds:,.0f}/s): edge protocol RSS {before:.0f} MB"
            f" before, {after:.0f} MB after; code cache {metrics[ENTRIES]:,.0f} entries,"
            f" {metrics[CACHE_BYTES] / 2**20:.1f} MB estimated (EDGE_CACHE_MB=64 per cache); during the flood"
            f" {during(LOOKUPS):,.0f} code lookups (Redis MGET, then PostgreSQL), {during(FILTERED):,.0f} answered"
            f" by the filter alone; filter copy {metrics[FILTER_BYTES] / 2**20:.2f} MB"]


if __name__ == "__main__":
    sys.exit(main())

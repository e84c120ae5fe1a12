"""`make bench-edge`: the edge's throughput and latency as ratios to a bare uvicorn 302, measured in one run.

The server under test runs on CPU 0; wrk, PostgreSQL and Redis on CPU 1 (start this script under
`taskset -c 1` so the private servers it starts inherit that CPU). Other work on the machine moves every
figure, so only the ratios measured in the same run mean much.

  (a) a bare uvicorn ASGI app returning a fixed 302 (the reference)
  (b) nginx `return 302`, if nginx is installed
  (c) the edge on 100 hot codes: group + code params + visitor query merged, every scan acknowledged by Redis
  (d) the edge over 1,000,000 codes with Zipf-distributed slugs, rows read through from PostgreSQL
  (e) as (c), but the codes' group has 20 rules (every condition type, none matching) and a split
      (docs/rules.md): the budget is (e)/(c) ≥ 0.9

All servers run side by side (an idle one costs nothing) and every round measures each scenario in turn.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from pydantic import TypeAdapter

from control_plane.cli.migrate import migrate
from shared.embedded import EmbeddedServices, free_port, temporary_root
from shared.processes import spawn, stop
from shared.rules import Rules, Split, dump_rules, dump_split

SERVER_CPU, LOAD_CPU = "0", "1"
HOST = "bench.test"
HERE = Path(__file__).resolve().parent
UVICORN_FLAGS = ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
                 "--backlog", "4096"]


@dataclass(frozen=True)
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    bad: int  # answers other than 2xx/3xx, and socket errors

    def line(self, ratio_to_reference: float | None) -> str:
        ratio = f"{ratio_to_reference:6.2f}" if ratio_to_reference is not None else "     -"
        return (f"{self.name:<44} {self.rps:>10,.0f} {self.p50_ms:>8.2f} {self.p99_ms:>8.2f} {ratio}"
                f"{'  (' + str(self.bad) + ' bad answers)' if self.bad else ''}")


def find_or_install(tool: str) -> str | None:
    found = shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None)
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    print(f"installing {tool} with apt-get", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", tool], check=False, timeout=600,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, stdout=subprocess.DEVNULL)
    return shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None)


def _milliseconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def run_wrk(wrk: str, name: str, url: str, seconds: int, connections: int, script: str | None = None,
            env: dict[str, str] | None = None) -> Result:
    argv = ["taskset", "-c", LOAD_CPU, wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
            "--timeout", "5s", "-H", f"Host: {HOST}", *(["-s", script] if script else []), url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120,
                         env={**os.environ, **(env or {})}).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _milliseconds(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _milliseconds(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    bad += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return Result(name, rps, p50, p99, bad)


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
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


@contextmanager
def serving(argv: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[str]:
    process = spawn(["taskset", "-c", SERVER_CPU, *argv], env={**os.environ, **(env or {})})
    try:
        wait_listening(port, process)
        time.sleep(0.5)  # let start-up work (cache follower, pools) settle
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process, signal.SIGTERM)


@contextmanager
def nginx(binary: str, port: int) -> Iterator[str]:
    folder = Path(tempfile.mkdtemp(prefix="scanroute-nginx-"))
    (folder / "nginx.conf").write_text(
        f"worker_processes 1; daemon off; pid {folder}/nginx.pid; error_log {folder}/error.log;\n"
        f"events {{ worker_connections 4096; }}\n"
        f"http {{ access_log off; client_body_temp_path {folder}; proxy_temp_path {folder};\n"
        f"  fastcgi_temp_path {folder}; uwsgi_temp_path {folder}; scgi_temp_path {folder};\n"
        f"  server {{ listen 127.0.0.1:{port}; location / {{ return 302 https://example.com/menu; }} }} }}\n")
    try:
        with serving([binary, "-p", str(folder), "-c", str(folder / "nginx.conf")], port) as url:
            yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def seed(database_url: str, codes: int) -> None:
    """An organisation, a group with params, 100 hot codes with their own params, and `codes` more (COPY)."""
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
        await seed_rules(conn)
        await conn.copy_records_to_table(
            "qr_codes", columns=["id", "org_id", "livemode", "kind", "type", "slug", "domain", "group_id"],
            records=((f"qr_z{n}", "org_bench", True, "dynamic", "url", f"z{n}", HOST, "grp_bench")
                     for n in range(1, codes + 1)))
        await conn.execute("ANALYZE qr_codes")
    finally:
        await conn.close()


# Five kinds of condition, four times over: a visitor (wrk: no user agent, no language, no country) reaches
# the split only after evaluating all twenty.
BENCH_RULES = [{"country": ["DE"]}, {"device": ["android"]}, {"language": ["fr"]},
               {"weekday": ["sun"], "time": {"from": "22:00", "to": "02:00"}, "timezone": "Europe/Berlin"},
               {"ip": ["10.0.0.0/8"], "query": {"src": "flyer"}}] * 4


async def seed_rules(conn: asyncpg.Connection[Any]) -> None:
    """100 hot codes like (c)'s, in a group with 20 rules and a split."""
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8, help="measured seconds per scenario and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all scenarios, interleaved")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--codes", type=int, default=1_000_000)
    args = parser.parse_args()
    wrk = find_or_install("wrk")
    if wrk is None:
        print("wrk is missing: install it (Debian/Ubuntu: apt-get install wrk), or run this as root")
        return 1
    nginx_binary = find_or_install("nginx")
    measure = functools.partial(run_wrk, wrk, seconds=args.seconds, connections=args.connections)
    root = temporary_root("scanroute-bench-")
    services = EmbeddedServices(root, persistent=False)
    services.start()
    try:
        print(f"seeding {args.codes:,} codes …", flush=True)
        started = time.monotonic()
        asyncio.run(seed(services.database_url, args.codes))
        print(f"seeded in {time.monotonic() - started:.1f} s", flush=True)
        rounds = run_rounds(measure, services, root, args, nginx_binary)
    finally:
        services.stop()
        shutil.rmtree(root, ignore_errors=True)
    report(rounds, args)
    return 0


def run_rounds(measure: Any, services: EmbeddedServices, root: Path, args: argparse.Namespace,
               nginx_binary: str | None) -> dict[str, list[Result]]:
    """Every scenario once per round, so that a burst of load from elsewhere hits all of them alike."""
    bare_port, edge_port, nginx_port = free_port(), free_port(), free_port()
    env = {"DATABASE_URL": services.database_url, "REDIS_URL": services.redis_url, "REDIS_NAMESPACE": "bench",
           "EDGE_BIND": f"127.0.0.1:{edge_port}", "DEFAULT_DOMAIN": HOST, "SCAN_HASH_SECRET": "bench-secret-0123456789",
           "EDGE_JOURNAL_DIR": str(root / "journal")}
    hot, zipf, zipf_env = str(HERE / "hot.lua"), str(HERE / "zipf.lua"), {"ZIPF_N": str(args.codes)}
    python = sys.executable
    with contextlib.ExitStack() as stack:
        bare = stack.enter_context(serving([python, "-m", "uvicorn", "loadtests.bare_redirect:app", "--port",
                                            str(bare_port), *UVICORN_FLAGS], bare_port))
        edge = stack.enter_context(serving([python, "-m", "control_plane.cli", "edge"], edge_port, env))
        scenarios: dict[str, dict[str, Any]] = {
            "a": {"name": "(a) bare uvicorn ASGI, fixed 302", "url": bare},
            "c": {"name": "(c) edge, 100 hot codes, full resolution", "url": edge, "script": hot},
            "d": {"name": f"(d) edge, {args.codes:,} codes, Zipf 0.99", "url": edge, "script": zipf,
                  "env": zipf_env},
            "e": {"name": "(e) edge, 100 hot codes, 20 rules + split", "url": edge, "script": hot,
                  "env": {"HOT_PREFIX": "r"}},
        }
        if nginx_binary:
            scenarios["b"] = {"name": "(b) nginx return 302", "url": stack.enter_context(nginx(nginx_binary,
                                                                                                nginx_port))}
        for scenario in scenarios.values():
            measure(**{**scenario, "name": "warm-up"})
        rounds: dict[str, list[Result]] = {key: [] for key in sorted(scenarios)}
        for number in range(args.rounds):
            print(f"round {number + 1}/{args.rounds}", flush=True)
            for key in _order(list(rounds), number):
                rounds[key].append(measure(**scenarios[key]))
    return rounds


def _order(keys: list[str], number: int) -> list[str]:
    """(c) and (e) back to back, in turns first (c e, then e c, …): a burst of load from elsewhere that hits
    one of them in a round is as likely to hit the other in the next, and (e)/(c) is judged per round."""
    order = [key for key in keys if key != "e"]
    order.insert(order.index("c") + (number % 2 == 0), "e")
    return order


def report(rounds: dict[str, list[Result]], args: argparse.Namespace) -> None:
    print(f"\nserver on CPU {SERVER_CPU}, wrk/PostgreSQL/Redis on CPU {LOAD_CPU}, {args.connections} connections, "
          f"{args.rounds} rounds of {args.seconds} s; {os.cpu_count()} CPUs, {os.uname().machine}, "
          f"Python {sys.version.split()[0]}; median of the rounds (ratios: median of per-round ratios)")
    print(f"{'scenario':<44} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6}")
    ratios = {key: statistics.median(r.rps / a.rps for r, a in zip(results, rounds["a"], strict=True))
              for key, results in rounds.items()}
    for key, results in rounds.items():
        median = Result(results[0].name, statistics.median(r.rps for r in results),
                        statistics.median(r.p50_ms for r in results), statistics.median(r.p99_ms for r in results),
                        sum(r.bad for r in results))
        print(median.line(ratios[key] if key != "a" else None))
    print(f"\n(c)/(a) = {ratios['c']:.2f} (target ≥ 0.5)   (d)/(a) = {ratios['d']:.2f} (target ≥ 0.4)   "
          f"edge p99 = {statistics.median(r.p99_ms for r in rounds['c']):.2f} / "
          f"{statistics.median(r.p99_ms for r in rounds['d']):.2f} ms (target < 10 ms)")
    with_rules = [e.rps / c.rps for e, c in zip(rounds["e"], rounds["c"], strict=True)]
    low, high = statistics.quantiles(with_rules, n=4)[0], statistics.quantiles(with_rules, n=4)[2]
    print(f"(e)/(c) = {statistics.median(with_rules):.2f} (target ≥ 0.90); per round "
          f"{', '.join(f'{r:.2f}' for r in with_rules)}; interquartile spread {high - low:.2f}")


if __name__ == "__main__":
    sys.exit(main())

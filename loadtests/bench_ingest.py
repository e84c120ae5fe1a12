"""`make bench-ingest`: the ingest worker against a bare COPY of the same rows (the ceiling), one worker
against two, end-to-end lag, and analytics latency on a code with 1M scans.

Throughput, in one run, over realistic traffic (loadtests/scan_traffic.py: 1,000 codes scanned by Zipf's
law over 48 hours in stream order, ~190 user agents) and in interleaved rounds:

- the ceiling: the same rows (decoded and enriched beforehand, untimed) COPYed into `scans` on one
  connection, one transaction per batch, into the same table with the same indexes;
- one and two `scanroute ingest` processes: stream read, decode, enrichment, COPY, hourly counts and sketches,
  `scan_count`, XACK. Each process first ingests a warm-up share (its caches and PostgreSQL's warm), is
  paused (SIGSTOP) while the measured events are put on the stream, and is timed from SIGCONT until the
  group has acknowledged every entry.

Every measured phase starts from the same table state (truncated, then the warm-up rows) after a
CHECKPOINT. No CPU pinning is applied; the affinity of every process involved is read back and printed.

Runs on a scratch database (loadtests/stack.py: on DATABASE_URL/REDIS_URL when both are set, removed
afterwards, else on private servers started for the run, as the tests do).

    python -m loadtests.bench_ingest [--events 200000] [--rounds 2] [--analytics-scans 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis

from control_plane.api.app import create_app
from control_plane.ingest import store
from control_plane.ingest.scan_row import COLUMNS, ScanRow, scan_row
from control_plane.ingest.worker import IngestWorker, decode
from loadtests.scan_traffic import Code, make_codes, make_key, scan_events, user_agents
from loadtests.stack import Scratch, scratch_database
from shared.database import create_pool
from shared.keys import INGEST_GROUP, SCAN_FIELD, RedisKeys
from shared.processes import spawn, stop
from shared.scan_event import ScanEvent
from shared.settings import ControlPlaneSettings, IngestSettings

ROOT = Path(__file__).resolve().parent.parent
RESET = "TRUNCATE scans, scan_hours, scan_dead_letters, events; UPDATE qr_codes SET scan_count = 0"


def cpus_of(pid: int) -> str:
    """The CPUs a process may run on, read back from the kernel."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


async def pinning(pool: asyncpg.Pool[Any], redis: aioredis.Redis, workers: list[int]) -> str:
    backends = [r["pid"] for r in await pool.fetch("SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL")]
    redis_pid = int((await redis.info("server"))["process_id"])
    parts = [("bench", [os.getpid()]), ("ingest workers", workers), ("postgres processes", backends),
             ("redis", [redis_pid])]
    return "; ".join(f"{name} ({len(pids)}) CPUs {', '.join(sorted({cpus_of(p) for p in pids}))}"
                     for name, pids in parts if pids)


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU of a process (and of its children it has reaped), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


class Cpu:
    """CPU spent by the processes of a measured phase: PostgreSQL's (the postmaster's children, live or reaped),
    Redis's, and given processes'."""

    def __init__(self, postmaster: int, redis_pid: int) -> None:
        self.postmaster = postmaster
        self.redis_pid = redis_pid

    def postgres(self) -> float:
        children = 0.0
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if parent == self.postmaster:
                    children += cpu_seconds(int(entry.name))
        return cpu_seconds(self.postmaster, children=True) + children

    def sample(self, pids: list[int]) -> dict[str, float]:
        return {"client": sum(cpu_seconds(pid) for pid in pids), "postgres": self.postgres(),
                "redis": cpu_seconds(self.redis_pid)}

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float], scans: int) -> dict[str, float]:
        """µs of CPU per scan, by process kind."""
        return {kind: (after[kind] - before[kind]) / scans * 1e6 for kind in before}


async def cpu_meter(pool: asyncpg.Pool[Any], redis: aioredis.Redis) -> Cpu:
    backend = await pool.fetchval("SELECT pg_backend_pid()")
    postmaster = int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return Cpu(postmaster, int((await redis.info("server"))["process_id"]))


def batches(rows: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


async def bare_copy(pool: asyncpg.Pool[Any], warm: list[ScanRow], rows: list[ScanRow], batch: int,
                    cpu: Cpu | None = None) -> tuple[float, dict[str, float]]:
    """The ceiling: rows/s of a bare COPY into `scans`, one transaction per batch, on one connection; and the
    CPU it took per row."""
    async with pool.acquire() as conn:
        await conn.execute(RESET)
        for chunk in batches(warm, batch):
            await conn.copy_records_to_table("scans", records=chunk, columns=COLUMNS)
        await conn.execute("CHECKPOINT")
        before = cpu.sample([os.getpid()]) if cpu else {}
        started = time.perf_counter()
        for chunk in batches(rows, batch):
            async with conn.transaction():
                await conn.copy_records_to_table("scans", records=chunk, columns=COLUMNS)
        rate = len(rows) / (time.perf_counter() - started)
        return rate, Cpu.spent(before, cpu.sample([os.getpid()]), len(rows)) if cpu else {}


async def breakdown(pool: asyncpg.Pool[Any], warm: list[bytes], payloads: list[bytes], batch: int) -> str:
    """Where one worker's time goes: each step of storing the same batches, in turn on one connection (no
    overlap between decoding and storing), in µs per scan; and the bare COPY of the same rows after it."""
    spent: dict[str, float] = dict.fromkeys(("decode + enrich + summarise", "COPY", "hourly counts + sketches",
                                             "scan_count"), 0.0)
    steps = {"COPY": store._insert_new, "hourly counts + sketches": store.add_hours, "scan_count": store.add_scans}

    def timed(name: str, step: Any) -> Any:
        async def run(*args: Any) -> Any:
            started = time.perf_counter()
            try:
                return await step(*args)
            finally:
                spent[name] += time.perf_counter() - started
        return run

    await pool.execute(RESET)
    async with pool.acquire() as conn:
        for chunk in batches(warm, batch):
            decoded = decode([(b"0-1", {SCAN_FIELD: p}) for p in chunk])
            await store.store_rows(conn, [p.row for p in decoded.decoded], decoded.summary)
        await conn.execute("CHECKPOINT")
        for name, step in steps.items():
            setattr(store, step.__name__, timed(name, step))
        try:
            started = time.perf_counter()
            for chunk in batches(payloads, batch):
                at = time.perf_counter()
                decoded = decode([(b"0-1", {SCAN_FIELD: p}) for p in chunk])
                spent["decode + enrich + summarise"] += time.perf_counter() - at
                await store.store_rows(conn, [p.row for p in decoded.decoded], decoded.summary)
            elapsed = time.perf_counter() - started
        finally:
            for step in steps.values():
                setattr(store, step.__name__, step)
    parts = ", ".join(f"{name} {seconds / len(payloads) * 1e6:.1f}" for name, seconds in spent.items())
    return f"{len(payloads) / elapsed:,.0f} scans/s in turn; µs per scan: {parts}"


async def xadd_all(redis: aioredis.Redis, stream: str, payloads: list[bytes]) -> None:
    for chunk in batches(payloads, 10_000):
        async with redis.pipeline(transaction=False) as pipe:
            for payload in chunk:
                pipe.xadd(stream, {SCAN_FIELD: payload})
            await pipe.execute()


async def all_acknowledged(redis: aioredis.Redis, stream: str) -> bool:
    info: Any = await redis.xinfo_stream(stream)
    groups: Any = await redis.xinfo_groups(stream)
    group = next(g for g in groups if g["name"] in (INGEST_GROUP, INGEST_GROUP.encode()))
    return bool(group["pending"] == 0 and group["last-delivered-id"] == info["last-generated-id"])


async def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        await asyncio.sleep(0.01)


async def workers_run(pool: asyncpg.Pool[Any], redis: aioredis.Redis, env: dict[str, str], warm: list[bytes],
                      payloads: list[bytes], workers: int, batch: int, cpu: Cpu
                      ) -> tuple[float, str, dict[str, float]]:
    """Scans/s of `workers` ingest processes over `payloads`, after `warm`; the pinning read back; and the CPU
    the phase took per scan (the bench's own polling is not counted)."""
    await pool.execute(RESET)
    stream = RedisKeys(env["REDIS_NAMESPACE"]).scans
    await redis.delete(stream, RedisKeys(env["REDIS_NAMESPACE"]).scan_attempts)
    await redis.xgroup_create(stream, INGEST_GROUP, id="0", mkstream=True)
    processes = [spawn([sys.executable, "-m", "control_plane.cli", "ingest"], cwd=ROOT, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL,
                       env={**os.environ, **env, "INGEST_CONSUMER": f"bench-{n}", "INGEST_BLOCK_MS": "20",
                            "INGEST_BATCH_SIZE": str(batch)})
                 for n in range(workers)]
    try:
        await xadd_all(redis, stream, warm)
        await wait_until(lambda: all_acknowledged(redis, stream), 300, "the warm-up")
        await pool.execute("CHECKPOINT")
        for process in processes:
            process.send_signal(signal.SIGSTOP)
        await xadd_all(redis, stream, payloads)
        pids = [p.pid for p in processes]
        before = cpu.sample(pids)
        started = time.perf_counter()
        for process in processes:
            process.send_signal(signal.SIGCONT)
        await wait_until(lambda: all_acknowledged(redis, stream), 600, "ingesting every event")
        rate = len(payloads) / (time.perf_counter() - started)
        spent = Cpu.spent(before, cpu.sample(pids), len(payloads))
        pinned = await pinning(pool, redis, [p.pid for p in processes])
    finally:
        for process in processes:
            process.send_signal(signal.SIGCONT)
        codes = [stop(process) for process in processes]
    assert codes == [0] * workers, f"ingest exit codes {codes}"
    stored = await pool.fetchval("SELECT count(*) FROM scans")
    assert stored == len(warm) + len(payloads), f"{stored} of {len(warm) + len(payloads)} scans stored"
    assert await pool.fetchval("SELECT count(*) FROM scan_dead_letters") == 0
    return rate, pinned, spent


async def bench_throughput(database_url: str, redis_url: str, count: int, batch: int, rounds: int) -> None:
    namespace = f"bench{secrets.token_hex(4)}"
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "REDIS_NAMESPACE": namespace}
    redis = aioredis.Redis.from_url(redis_url)
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            codes: list[Code] = await make_codes(conn, 1000)
        warm_count = max(batch * 4, count // 10)
        # Warm-up hours come first, the measured ones follow: one stream in time order.
        end_ms = int(time.time() * 1000) - 60_000
        payloads = scan_events(codes, count, hours=48, seed=1, end_ms=end_ms)
        warm = scan_events(codes, warm_count, hours=48 * warm_count / count, seed=2, end_ms=end_ms - 48 * 3_600_000)
        warm_two = scan_events(codes, warm_count * 2, hours=96 * warm_count / count, seed=3,
                               end_ms=end_ms - 48 * 3_600_000)
        rows = [scan_row(ScanEvent.decode(p)) for p in payloads]
        warm_rows = [scan_row(ScanEvent.decode(p)) for p in warm]
        days = {row.scanned_at.date() for row in rows + warm_rows} | {
            scan_row(ScanEvent.decode(p)).scanned_at.date() for p in warm_two[:1]}
        await pool.execute("SELECT ensure_scan_partitions($1, $2)", min(days), max(days))
        print(f"ingest throughput: {count:,} events over 48 h in stream order, {len(codes):,} codes (Zipf s=1.1),"
              f" {len(set(r.user_agent for r in rows))} user agents, batch {batch:,}; warm-up {warm_count:,} events"
              f" per worker; {rounds} interleaved rounds; load average before: {os.getloadavg()[0]:.1f}")
        results: dict[str, list[float]] = {"copy": [], "one": [], "two": []}
        cpu_results: dict[str, list[dict[str, float]]] = {"copy": [], "one": []}
        cpu = await cpu_meter(pool, redis)
        pinned = ""
        for round_number in range(1, rounds + 1):
            rate, spent = await bare_copy(pool, warm_rows, rows, batch, cpu)
            results["copy"].append(rate)
            cpu_results["copy"].append(spent)
            one, _, spent = await workers_run(pool, redis, env, warm, payloads, 1, batch, cpu)
            results["one"].append(one)
            cpu_results["one"].append(spent)
            two, pinned, _ = await workers_run(pool, redis, env, warm_two, payloads, 2, batch, cpu)
            results["two"].append(two)
            print(f"  round {round_number}: bare COPY {results['copy'][-1]:,.0f} rows/s, one worker {one:,.0f} scans/s,"
                  f" two workers {two:,.0f} scans/s; CPU µs per scan: bare COPY {cpu_text(cpu_results['copy'][-1])};"
                  f" one worker {cpu_text(cpu_results['one'][-1])}")
        print(f"  where one worker's time goes (same rows, steps in turn): "
              f"{await breakdown(pool, warm, payloads, batch)}; bare COPY right after:"
              f" {(await bare_copy(pool, warm_rows, rows, batch))[0]:,.0f} rows/s")
        ceiling, one, two = (statistics.median(results[k]) for k in ("copy", "one", "two"))
        print(f"ingest, medians: bare COPY {ceiling:,.0f} rows/s; one worker {one:,.0f} scans/s = {one / ceiling:.2f}x"
              f" the bare COPY (target >= 0.70x); two workers {two:,.0f} scans/s = {two / one:.2f}x one worker")
        copy_cpu, one_cpu = (statistics.median(sum(c.values()) for c in cpu_results[k]) for k in ("copy", "one"))
        print(f"  CPU per scan, medians (all processes: client, PostgreSQL, Redis): bare COPY {copy_cpu:.1f} µs,"
              f" one worker {one_cpu:.1f} µs = {copy_cpu / one_cpu:.2f}x: the ratio's bound when the cores are busy")
        print(f"pinning applied: none; CPU affinity read back: {pinned}; load average after:"
              f" {os.getloadavg()[0]:.1f}")
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{namespace}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
        await pool.close()


def cpu_text(spent: dict[str, float]) -> str:
    return " + ".join(f"{kind} {value:.1f}" for kind, value in spent.items()) + f" = {sum(spent.values()):.1f}"


async def bench_lag(database_url: str, redis_url: str, rate: int, seconds: float) -> list[float]:
    """End-to-end lag at a steady `rate`: XADD time of each scan → its count visible in PostgreSQL.

    A real `scanroute ingest` process (default settings) consumes the stream; this process produces in 10 ms
    ticks and polls the code's `scan_count` every 20 ms (so lags are accurate to about 20 ms). Scans are
    stored in stream order, so scan i is visible once the count reaches i + 1.
    """
    namespace = f"benchlag{secrets.token_hex(4)}"
    redis = aioredis.Redis.from_url(redis_url)
    pool = await create_pool(database_url, min_size=1, max_size=2)
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "REDIS_NAMESPACE": namespace}
    worker = await asyncio.create_subprocess_exec(sys.executable, "-m", "control_plane.cli", "ingest", env=env,
                                                  stderr=asyncio.subprocess.DEVNULL)
    try:
        async with pool.acquire() as conn:
            [code] = await make_codes(conn, 1, orgs=1, groups=1)
        code_id, org_id = code.id, code.org_id
        stream = RedisKeys(namespace).scans
        agent = user_agents()[0][0]
        produced: list[float] = []
        lags: list[float] = []
        total = int(rate * seconds)

        async def produce() -> None:
            started = time.monotonic()
            while len(produced) < total:
                due = min(total, int((time.monotonic() - started) * rate) + rate // 100)
                batch = due - len(produced)
                if batch > 0:
                    now_ms = int(time.time() * 1000)
                    async with redis.pipeline(transaction=False) as pipe:
                        for _ in range(batch):
                            pipe.xadd(stream, {SCAN_FIELD: ScanEvent(
                                str(uuid.uuid4()), now_ms, code_id, None, org_id, True, "redirected", "GET", True,
                                "ip", "visitor", agent).encode()})
                        await pipe.execute()
                    produced.extend([time.monotonic()] * batch)
                await asyncio.sleep(0.01)

        async def observe() -> None:
            deadline = time.monotonic() + seconds + 60
            while len(lags) < total and time.monotonic() < deadline:
                visible = await pool.fetchval("SELECT scan_count FROM qr_codes WHERE id = $1", code_id)
                now = time.monotonic()
                lags.extend(now - produced[i] for i in range(len(lags), min(visible, len(produced))))
                await asyncio.sleep(0.02)

        await asyncio.gather(produce(), observe())
        assert len(lags) == total, f"{len(lags)} of {total} scans became visible"
        return lags
    finally:
        worker.terminate()
        await worker.wait()
        keys = [k async for k in redis.scan_iter(match=f"{namespace}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
        await pool.close()


async def ingest_month_of_scans(pool: asyncpg.Pool[Any], redis: aioredis.Redis, database_url: str, redis_url: str,
                                code: Code, scans: int) -> None:
    """`scans` scans of `code` over the last 30 days, stored by the real ingest path (hourly rows too)."""
    settings = IngestSettings.from_env({"DATABASE_URL": database_url, "REDIS_URL": redis_url,
                                        "REDIS_NAMESPACE": f"bench{secrets.token_hex(4)}"})
    worker = IngestWorker(settings, pool, redis)
    chunk = 50_000
    for start in range(0, scans, chunk):
        share = min(chunk, scans - start)
        end_ms = int(time.time() * 1000) - 60_000 - 30 * 86_400_000 * start // scans
        payloads = scan_events([code], share, hours=30 * 24 * share / scans, seed=start, visitors=max(scans // 2, 1),
                               end_ms=end_ms)
        for at in range(0, len(payloads), 5000):
            await worker.ingest([(b"0-1", {SCAN_FIELD: p}) for p in payloads[at:at + 5000]])
    await pool.execute("VACUUM ANALYZE scans")


async def bench_analytics(database_url: str, redis_url: str, scans: int, runs: int) -> dict[str, float]:
    """One code with `scans` scans over 30 days, stored by the real ingest path (hourly rows too)."""
    pool = await create_pool(database_url, min_size=1, max_size=2)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async with pool.acquire() as conn:
            codes = await make_codes(conn, 1, orgs=1, groups=1)
            key = await make_key(conn, codes[0].org_id)
        code_id = codes[0].id
        await ingest_month_of_scans(pool, redis, database_url, redis_url, codes[0], scans)
        exact = await pool.fetchrow(
            "SELECT count(DISTINCT visitor_hash) AS visitors, count(DISTINCT ip_hash) AS ips FROM scans"
            " WHERE code_id = $1 AND NOT is_bot AND scanned_at >= now() - interval '30 days'", code_id, timeout=300)
        print(f"exact uniques over 30 days (for the estimates below): {exact['visitors']} visitors, {exact['ips']} IPs")
    finally:
        await redis.aclose()
        await pool.close()
    settings = ControlPlaneSettings.from_env({"DATABASE_URL": database_url, "REDIS_URL": redis_url,
                                              "REDIS_NAMESPACE": f"bench{secrets.token_hex(4)}"})
    app = create_app(settings)
    results: dict[str, float] = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cp.bench", timeout=60,
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            for label, params in (("30 days by day", {}), ("7 days by hour", {"group_by": "hour", "since": (
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 7 * 86400)))})):
                timings = []
                for _ in range(runs + 1):
                    started = time.perf_counter()
                    response = await client.get(f"/v1/qr-codes/{code_id}/scans", params=params)
                    timings.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, response.text
                timings = timings[1:]  # the first run warms caches
                results[f"{label} p50 ms"] = statistics.median(timings)
                results[f"{label} max ms"] = max(timings)
                print(f"analytics {label}: totals {response.json()['totals']}")
    return results


async def bench(scratch: Scratch, args: argparse.Namespace) -> None:
    database_url, redis_url = scratch.database_url, scratch.redis_url
    if args.events > 0:
        await bench_throughput(database_url, redis_url, args.events, args.batch_size, args.rounds)
    if args.lag_seconds > 0:
        lags = sorted(await bench_lag(database_url, redis_url, args.lag_rate, args.lag_seconds))
        print(f"end-to-end lag at {args.lag_rate:,} scans/s for {args.lag_seconds:.0f} s (one worker process):"
              f" p50 {lags[len(lags) // 2] * 1000:.0f} ms, p99 {lags[int(len(lags) * 0.99)] * 1000:.0f} ms,"
              f" max {lags[-1] * 1000:.0f} ms (target p99 < 2000 ms)")
    if args.analytics_scans > 0:
        results = await bench_analytics(database_url, redis_url, args.analytics_scans, args.runs)
        for label, value in results.items():
            print(f"analytics, one code with {args.analytics_scans:,} scans over 30 days, {label}: {value:.0f}")


def main(args: argparse.Namespace) -> None:
    with scratch_database() as scratch:
        asyncio.run(bench(scratch, args))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="0 skips the throughput part")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--analytics-scans", type=int, default=1_000_000, help="0 skips the analytics part")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--lag-rate", type=int, default=10_000)
    parser.add_argument("--lag-seconds", type=float, default=20.0, help="0 skips the lag part")
    main(parser.parse_args())

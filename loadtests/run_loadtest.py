"""`make loadtest`: seed a campaign, scan it with locust while admins re-route it, then account for every
scan, one by one (loadtests/accounting.py, docs/loadtests.md). Exits non-zero on any failed, lost,
duplicated, wrong-outcome or stale scan, and on any admin write the API did not acknowledge.

Settings (environment): LOAD_USERS (default 50), LOAD_SPAWN_RATE (10/s), LOAD_DURATION (60s),
LOAD_PROCESSES (locust processes, default 1), LOAD_EDGE_WORKERS (edge processes, default 1), LOAD_DRAIN
(seconds to wait for the ingest, 120), LOAD_FAULT (`503:N`, `duplicate:N` or `drop:N`: put the broken edge
of loadtests/fault_proxy.py in front of the real one), LOAD_BURN_CPUS (busy-loop processes run while scanning,
to make the machine busy on purpose; default 0), plus the campaign knobs of loadtests/campaign.py.
Runs against a scratch stack (loadtests/stack.py): private servers unless DATABASE_URL/REDIS_URL are set.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import psutil

from loadtests.accounting import REFERER_BASE, Answer, History, Write, account, read_answers
from loadtests.admins import start_admins
from loadtests.campaign import Knobs
from loadtests.fault_proxy import FaultProxy, serve
from loadtests.seed import seed
from loadtests.stack import scratch_stack
from shared.embedded import free_port


async def stored_outcomes(database_url: str) -> dict[str, list[str]]:
    """Scan identity → the outcome of every row stored under it."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT referer, outcome FROM scans WHERE starts_with(referer, $1)", REFERER_BASE)
    finally:
        await conn.close()
    stored: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        stored[row["referer"]].append(row["outcome"])
    return stored


def drain(database_url: str, expected: int, limit: float) -> dict[str, list[str]]:
    """Wait until the analytics hold `expected` rows of this run, or stop changing for 15 s, or `limit` passes."""
    deadline, last, last_change = time.monotonic() + limit, -1, time.monotonic()
    while True:
        stored = asyncio.run(stored_outcomes(database_url))
        total = sum(len(v) for v in stored.values())
        if total != last:
            last, last_change = total, time.monotonic()
        if total >= expected or time.monotonic() > deadline or time.monotonic() - last_change > 15:
            return stored
        time.sleep(0.5)


class CpuMeter:
    """CPU seconds used by process trees between start() and stop(), sampled every half second."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots, self.first, self.last = roots, {}, {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            for name, pid in self.roots.items():
                try:
                    root = psutil.Process(pid)
                    for process in [root, *root.children(recursive=True)]:
                        times = process.cpu_times()
                        used = times.user + times.system
                        self.first.setdefault((name, process.pid), used)
                        self.last[(name, process.pid)] = used
                except psutil.Error:
                    continue
            if self.stopping.wait(0.5):
                return

    @contextmanager
    def measuring(self) -> Iterator[None]:
        started = time.monotonic()
        self.thread.start()
        try:
            yield
        finally:
            self.stopping.set()
            self.thread.join()
            self.seconds = time.monotonic() - started

    def cores(self, name: str) -> float:
        used = sum(self.last[k] - self.first[k] for k in self.last if k[0] == name)
        return used / self.seconds


@contextmanager
def cpu_burners(count: int) -> Iterator[None]:
    """`count` processes spinning on the CPU: a machine made busy on purpose."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


@contextmanager
def fault_proxy(spec: str, edge_url: str) -> Iterator[tuple[str, FaultProxy | None]]:
    """The edge's URL, or the URL of a broken edge in front of it when LOAD_FAULT is set."""
    if not spec:
        yield edge_url, None
        return
    mode, _, every = spec.partition(":")
    host, _, port = edge_url.removeprefix("http://").partition(":")
    proxy, proxy_port = FaultProxy((host, int(port)), mode, int(every or 1000)), free_port()
    loop, stop = asyncio.new_event_loop(), asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(proxy, proxy_port, stop),), daemon=True)
    thread.start()
    time.sleep(0.2)
    try:
        yield f"http://127.0.0.1:{proxy_port}", proxy
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(5)


def latency_line(answers: list[Answer]) -> str:
    times = sorted((a.finished - a.started) * 1000 for a in answers if a.status)
    if not times:
        return "latency: no answers"
    pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]  # noqa: E731
    return f"latency: p50 {pick(0.5):.1f} ms, p99 {pick(0.99):.1f} ms, max {times[-1]:.1f} ms"


def main() -> int:
    env = os.environ
    knobs = Knobs.from_env()
    edge_kind = f"edge --workers {env.get('LOAD_EDGE_WORKERS', '1')}"
    with scratch_stack(("control-plane", edge_kind, "ingest"), INGEST_BLOCK_MS="50") as stack, \
            tempfile.TemporaryDirectory() as work:
        edge_host = stack.urls["edge"].removeprefix("http://")
        started = time.monotonic()
        campaign = seed(stack.urls["api"], stack.key, edge_host, knobs)
        print(f"seeded {len(campaign.codes)} codes in {len(campaign.groups)} groups "
              f"in {time.monotonic() - started:.1f} s")
        campaign_file, results_dir = Path(work) / "campaign.json", Path(work) / "results"
        campaign.save(campaign_file)
        history = History()
        for group_id, (version, state) in campaign.groups.items():
            history.add(Write(group_id, version, 0.0, 0.0, state))
        stop_admins = threading.Event()
        admins, threads = start_admins(campaign, knobs.admins, stop_admins)
        burners = int(env.get("LOAD_BURN_CPUS", "0"))
        with fault_proxy(env.get("LOAD_FAULT", ""), stack.urls["edge"]) as (target, proxy), cpu_burners(burners):
            command = [str(Path(sys.executable).with_name("locust")), "-f", "loadtests/locustfile.py",
                       "--headless", "-u", env.get("LOAD_USERS", "50"), "-r", env.get("LOAD_SPAWN_RATE", "10"),
                       "-t", env.get("LOAD_DURATION", "60s"), "--host", target, "--stop-timeout", "10",
                       "--processes", env.get("LOAD_PROCESSES", "1"), "--only-summary",
                       "--exit-code-on-error", "0", "--loglevel", "WARNING"]
            locust = subprocess.Popen(command, env={**env, **stack.env, "LOADTEST_CAMPAIGN": str(campaign_file),
                                                    "LOADTEST_RESULTS_DIR": str(results_dir)})
            meter = CpuMeter({"edge": stack.processes["edge"].pid, "load generator": locust.pid})
            with meter.measuring():
                locust_exit = locust.wait()
        stop_admins.set()
        for thread in threads:
            thread.join(30)
        answers = list(read_answers(sorted(results_dir.glob("answers-*.jsonl"))))
        writes = [write for admin in admins for write in admin.writes]
        for write in writes:
            history.add(write)
        answered = sum(1 for a in answers if a.status in (302, 404))
        stored = drain(stack.database_url, answered, float(env.get("LOAD_DRAIN", "120")))
        report = account(answers, stored, history, knobs.grace)
        admin_failures = [failure for admin in admins for failure in admin.failures]
        print("\n=== accounting (scan by scan) ===")
        print(f"scans: {len(answers)} in {meter.seconds:.1f} s ({len(answers) / meter.seconds:,.0f}/s); "
              f"{latency_line(answers)}")
        print(f"CPU while scanning: edge {meter.cores('edge'):.2f} cores, "
              f"load generator {meter.cores('load generator'):.2f} cores (of {psutil.cpu_count()})")
        if burners:
            print(f"{burners} CPU burner processes spun while scanning")
        print(f"admin writes acknowledged: {len(writes)}; admin requests failed: {len(admin_failures)}; "
              f"grace window: {knobs.grace * 1000:.0f} ms")
        if proxy is not None:
            print(f"faults injected by the broken edge: {proxy.injected} ({proxy.mode} every {proxy.every})")
        for line in report.lines():
            print(line)
        for failure in admin_failures[:10]:
            print(f"  admin: {failure}")
        if locust_exit:
            print(f"locust exited with {locust_exit}")
        return 0 if report.ok and not admin_failures and not locust_exit and answers else 1


if __name__ == "__main__":
    sys.exit(main())

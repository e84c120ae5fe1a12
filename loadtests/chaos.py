"""`make chaos`: faults injected into a real `scanroute up` stack under a steady scan load, then every scan
accounted for; the figures of a run are in RELIABILITY.md.

`scanroute up` runs in a scratch folder with its own private PostgreSQL and Redis, on loopback only. For
each scenario a load of concurrent scans, each with a Referer of its own, runs for CHAOS_SECONDS while the
fault is injected; afterwards the run waits for the ingest worker to store what the edge answered and
counts, per scenario: scans answered 302, requests that failed (no answer or not a 302), scans answered
but not stored (lost), stored twice (duplicated), the longest time the edge answered nothing, and the
restarts `scanroute up` made. Prints a table; exits non-zero on any loss or duplicate, and on any failed
request in a scenario whose fault must not touch the edge.

Knobs (environment): CHAOS_SECONDS (per scenario, default 20), CHAOS_CONCURRENCY (default 16),
CHAOS_SCENARIOS (comma-separated names, default all), CHAOS_DRAIN (seconds to wait for the ingest, 120).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from dotenv import dotenv_values

from shared.embedded import free_port, temporary_root

REFERER_BASE = "https://chaos.scanroute.invalid/"
START_TIMEOUT = 120.0
RESTART_TIMEOUT = 60.0


@dataclass
class Stack:
    root: Path
    process: subprocess.Popen[bytes]
    edge: str
    api: str
    key: str
    database_url: str
    redis_url: str

    def status(self) -> dict[str, dict[str, object]]:
        try:
            return dict(json.loads((self.root / ".scanroute" / "processes.json").read_text()))
        except (OSError, ValueError):
            return {}

    def pid(self, kind: str) -> int:
        pid = self.status().get(kind, {}).get("pid")
        if not isinstance(pid, int):
            raise RuntimeError(f"{kind} is not running")
        return pid

    def restarts(self) -> int:
        return sum(int(child.get("restarts", 0)) for child in self.status().values())  # type: ignore[call-overload]


@dataclass
class Tally:
    answered: list[str] = field(default_factory=list)  # referers answered 302
    failed: int = 0
    last_answer: float = 0.0
    longest_gap: float = 0.0


async def _until(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.2)


async def _answers(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def start_stack(root: Path) -> Stack:
    edge, api = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    # A killed ingest worker's unacknowledged entries are claimed by its successor after this idle time
    # (default 60 s); 5 s keeps each scenario short.
    env = {"INGEST_CLAIM_IDLE_MS": "5000", **os.environ, "EDGE_BIND": edge, "CONTROL_PLANE_BIND": api,
           "DEFAULT_DOMAIN": edge, "PYTHONUNBUFFERED": "1"}
    for name in ("DATABASE_URL", "REDIS_URL"):  # always the stack's own private servers
        env.pop(name, None)
    log = open(root / "up.log", "ab")
    process = subprocess.Popen([sys.executable, "-m", "control_plane.cli", "up"], cwd=root, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    log.close()
    async with aiohttp.ClientSession() as session:
        await _until(lambda: _ready(process, session, edge, api), START_TIMEOUT, "scanroute up")
    services = dotenv_values(root / ".scanroute" / "services.env")
    key = (root / ".scanroute" / "demo_key").read_text().strip()
    return Stack(root, process, f"http://{edge}", f"http://{api}", key, str(services["DATABASE_URL"]),
                 str(services["REDIS_URL"]))


async def _ready(process: subprocess.Popen[bytes], session: aiohttp.ClientSession, edge: str, api: str) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"scanroute up exited with {process.returncode}")
    return await _answers(session, f"http://{edge}/healthz") and await _answers(session, f"http://{api}/healthz")


async def make_code(stack: Stack) -> str:
    async with aiohttp.ClientSession() as session, session.post(
            f"{stack.api}/v1/qr-codes", headers={"Authorization": f"Bearer {stack.key}"},
            json={"destination": {"type": "url", "url": "https://example.com/chaos"}}) as response:
        code = await response.json()
        if response.status != 201:
            raise RuntimeError(f"could not create a code: {code}")
        return str(code["slug"])


async def scan_load(stack: Stack, slug: str, scenario: str, seconds: float, concurrency: int) -> Tally:
    tally = Tally(last_answer=time.monotonic())
    deadline = time.monotonic() + seconds
    counter = iter(range(10**9))
    timeout = aiohttp.ClientTimeout(total=5)

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            referer = f"{REFERER_BASE}{scenario}/{next(counter)}"
            try:
                async with session.get(f"{stack.edge}/{slug}", allow_redirects=False, timeout=timeout,
                                       headers={"Referer": referer, "User-Agent": "Mozilla/5.0 (iPhone)"}) as r:
                    ok = r.status == 302
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            now = time.monotonic()
            if ok:
                tally.longest_gap = max(tally.longest_gap, now - tally.last_answer)
                tally.last_answer = now
                tally.answered.append(referer)
            else:
                tally.failed += 1
                await asyncio.sleep(0.05)  # a refused connection returns at once: do not spin

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    tally.longest_gap = max(tally.longest_gap, time.monotonic() - tally.last_answer)
    return tally


async def stored(stack: Stack, scenario: str) -> dict[str, int]:
    conn = await asyncpg.connect(stack.database_url, timeout=10)
    try:
        rows = await conn.fetch("SELECT referer, count(*) AS n FROM scans WHERE starts_with(referer, $1)"
                                " GROUP BY referer", f"{REFERER_BASE}{scenario}/")
    finally:
        await conn.close()
    return {row["referer"]: row["n"] for row in rows}


async def drain(stack: Stack, scenario: str, expected: int, limit: float) -> dict[str, int]:
    """Wait until the analytics hold `expected` rows, or stop changing for 30 s, or `limit` passes."""
    deadline, last, last_change = time.monotonic() + limit, -1, time.monotonic()
    while True:
        rows = await stored(stack, scenario)
        total = sum(rows.values())
        if total != last:
            last, last_change = total, time.monotonic()
        if total >= expected or time.monotonic() > deadline or time.monotonic() - last_change > 30:
            return rows
        await asyncio.sleep(0.5)


# --- faults -------------------------------------------------------------------------------------------------

async def kill_repeatedly(stack: Stack, kind: str, sig: int, every: float, times: int) -> None:
    for _ in range(times):
        await asyncio.sleep(every)
        victim = stack.pid(kind)
        os.kill(victim, sig)
        await _until(lambda victim=victim: _back(stack, kind, victim), RESTART_TIMEOUT,  # type: ignore[misc]
                     f"{kind} restarted")


async def _back(stack: Stack, kind: str, victim: int) -> bool:
    child = stack.status().get(kind, {})
    return child.get("state") == "running" and child.get("pid") not in (None, victim)


async def pause_redis(stack: Stack, seconds: float) -> None:
    await asyncio.sleep(2)
    client = aioredis.Redis.from_url(stack.redis_url, socket_timeout=5)
    try:
        await client.client_pause(int(seconds * 1000), all=True)
    finally:
        await client.aclose()


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    inject: Callable[[Stack, float], Awaitable[None]]
    edge_untouched: bool  # the fault is not in the edge: not one scan may fail


SCENARIOS = [
    Scenario("ingest-kill9", "kill -9 the ingest worker every 5 s",
             lambda s, t: kill_repeatedly(s, "ingest", signal.SIGKILL, 5, max(1, int(t // 5) - 1)), True),
    Scenario("webhooks-kill9", "kill -9 the webhook dispatcher",
             lambda s, t: kill_repeatedly(s, "webhooks", signal.SIGKILL, 2, 1), True),
    Scenario("control-plane-kill9", "kill -9 the control plane",
             lambda s, t: kill_repeatedly(s, "control-plane", signal.SIGKILL, 2, 1), True),
    Scenario("redis-pause", "Redis CLIENT PAUSE ALL for 4 s",
             lambda s, t: pause_redis(s, 4), True),
    Scenario("edge-sigterm", "SIGTERM the edge (one process under scanroute up)",
             lambda s, t: kill_repeatedly(s, "edge", signal.SIGTERM, 2, 1), False),
    Scenario("edge-kill9", "kill -9 the edge",
             lambda s, t: kill_repeatedly(s, "edge", signal.SIGKILL, 2, 1), False),
]


@dataclass
class Result:
    scenario: Scenario
    answered: int
    failed: int
    lost: int
    duplicated: int
    longest_gap: float
    restarts: int

    @property
    def passed(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and (self.failed == 0 or not self.scenario.edge_untouched)


async def run_scenario(stack: Stack, slug: str, scenario: Scenario, seconds: float, concurrency: int,
                       drain_limit: float) -> Result:
    restarts_before = stack.restarts()
    load = asyncio.create_task(scan_load(stack, slug, scenario.name, seconds, concurrency))
    await scenario.inject(stack, seconds)
    tally = await load
    rows = await drain(stack, scenario.name, len(tally.answered), drain_limit)
    lost = sum(1 for referer in tally.answered if referer not in rows)
    duplicated = sum(n - 1 for n in rows.values() if n > 1)
    return Result(scenario, len(tally.answered), tally.failed, lost, duplicated, tally.longest_gap,
                  stack.restarts() - restarts_before)


def table(results: list[Result], seconds: float, concurrency: int) -> str:
    lines = [f"chaos: {seconds:g} s of scans per scenario, {concurrency} concurrent clients, scanroute up on loopback",
             "", "| scenario | fault | answered 302 | failed | lost | duplicated | longest edge gap | restarts | "
             "result |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.scenario.name} | {r.scenario.what} | {r.answered} | {r.failed} | {r.lost} | "
                     f"{r.duplicated} | {r.longest_gap:.2f} s | {r.restarts} | {'pass' if r.passed else 'FAIL'} |")
    return "\n".join(lines)


async def main_async(root: Path) -> int:
    seconds = float(os.environ.get("CHAOS_SECONDS", "20"))
    concurrency = int(os.environ.get("CHAOS_CONCURRENCY", "16"))
    drain_limit = float(os.environ.get("CHAOS_DRAIN", "120"))
    chosen = [n for n in os.environ.get("CHAOS_SCENARIOS", "").split(",") if n]
    scenarios = [s for s in SCENARIOS if not chosen or s.name in chosen]
    if unknown := set(chosen) - {s.name for s in SCENARIOS}:
        print(f"unknown scenarios: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    stack = await start_stack(root)
    results = []
    try:
        slug = await make_code(stack)
        for scenario in scenarios:
            print(f"chaos: {scenario.name} ({scenario.what}) …", flush=True)
            results.append(await run_scenario(stack, slug, scenario, seconds, concurrency, drain_limit))
    finally:
        stack.process.send_signal(signal.SIGTERM)
        try:
            stack.process.wait(60)
        except subprocess.TimeoutExpired:
            stack.process.kill()
            stack.process.wait()
    print(table(results, seconds, concurrency))
    failed = [r.scenario.name for r in results if not r.passed]
    if failed:
        print(f"\nFAILED: {', '.join(failed)} (scanroute up's output: {root}/up.log)")
        return 1
    return 0


def main() -> int:
    root = temporary_root("scanroute-chaos-")
    try:
        code = asyncio.run(main_async(root))
    finally:
        if os.environ.get("CHAOS_KEEP") != "1":
            shutil.rmtree(root, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())

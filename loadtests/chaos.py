"""`make chaos`: faults injected into a real `scanroute up` stack under a steady scan load, then every scan
accounted for; the figures of a run are in RELIABILITY.md.

The run starts a private PostgreSQL and Redis of its own (persistent, as under `scanroute up`: Redis with
its append-only file, PostgreSQL with fsync) in a scratch folder, so that it can stop and start each of them
on the same port with its data, and runs `scanroute up` against them with `EDGE_WORKERS` edge processes,
on loopback only. For each scenario a load of concurrent scans, each with a Referer of its own, runs while
the fault is injected; afterwards the run waits for the ingest worker to store what the edge answered and
counts, per scenario: scans answered 302, requests that failed (no answer or not a 302), scans answered but
not stored (lost), stored twice (duplicated), answers older than an admin write acknowledged before the
scan was sent (stale: the code's destination is rewritten by an admin during some scenarios), the longest
time the edge answered nothing, the restarts `scanroute up` made, scans set aside as dead letters, and how
long after the load the analytics held every answered scan. Scenario-specific checks (the API's answers
while PostgreSQL is down, Redis's data kept, an edge process back) are listed under the table.

Prints the table; exits non-zero on any loss, duplicate, stale answer, dead letter or failed check, and on
any failed request in a scenario whose fault must not cost a single request.

Knobs (environment): CHAOS_SECONDS (scan load per scenario, default 20), CHAOS_CONCURRENCY (default 16),
CHAOS_SCENARIOS (comma-separated names, default all), CHAOS_DRAIN (seconds to wait for the ingest, 120),
CHAOS_KILL_SCANS and CHAOS_KILL_EVERY (the ingest kill loop: 100000 scans, a kill every 10 s),
CHAOS_PG_OUTAGE (seconds PostgreSQL stays stopped, 30), CHAOS_REDIS_DOWN (seconds per Redis stop, 3),
CHAOS_EDGE_WORKERS (edge processes, 2), CHAOS_JOURNAL_TMPFS=0 (journal-full with `prlimit --fsize` even
where a tmpfs could be mounted), CHAOS_KEEP=1 (keep the scratch folder).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from dotenv import dotenv_values

from shared.embedded import EmbeddedServices, free_port, temporary_root
from shared.keys import INGEST_GROUP, RedisKeys

REFERER_BASE = "https://chaos.scanroute.invalid/"
DESTINATION = "https://example.com/chaos/{n}"  # n: the admin write that set it
WRITTEN = re.compile(r"/chaos/(\d+)")
START_TIMEOUT = 120.0
RESTART_TIMEOUT = 60.0
API_DOWN_ANSWER = 2.0  # seconds within which the API must answer 503 while PostgreSQL is down


@dataclass(frozen=True)
class Knobs:
    seconds: float
    concurrency: int
    drain: float
    kill_scans: int
    kill_every: float
    pg_outage: float
    redis_down: float
    edge_workers: int

    @classmethod
    def from_env(cls) -> Knobs:
        env = os.environ.get
        return cls(seconds=float(env("CHAOS_SECONDS", "20")), concurrency=int(env("CHAOS_CONCURRENCY", "16")),
                   drain=float(env("CHAOS_DRAIN", "120")), kill_scans=int(env("CHAOS_KILL_SCANS", "100000")),
                   kill_every=float(env("CHAOS_KILL_EVERY", "10")), pg_outage=float(env("CHAOS_PG_OUTAGE", "30")),
                   redis_down=float(env("CHAOS_REDIS_DOWN", "3")),
                   edge_workers=int(env("CHAOS_EDGE_WORKERS", "2")))


@dataclass
class Stack:
    root: Path
    services: EmbeddedServices
    process: subprocess.Popen[bytes]
    edge: str
    api: str
    key: str
    database_url: str
    redis_url: str
    journal: Path
    journal_tmpfs: bool

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

    def restarts(self) -> Counter[str]:
        return Counter({kind: int(child.get("restarts", 0))  # type: ignore[call-overload]
                        for kind, child in self.status().items()})

    def edge_workers(self) -> list[int]:
        """The processes the edge forked (`--workers`), or the edge itself when it runs alone."""
        try:
            parent = self.pid("edge")
        except RuntimeError:
            return []
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    children.append(int(stat.parent.name))
        return sorted(children) or [parent]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass
class Tally:
    answered: list[tuple[str, float, int]] = field(default_factory=list)  # referer, sent at, write seen
    failed: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    last_answer: float = 0.0
    longest_gap: float = 0.0


@dataclass
class Writes:
    """The admin's writes of the code's destination: (n, acknowledged at), n increasing."""

    code_id: str
    acknowledged: list[tuple[int, float]] = field(default_factory=lambda: [(0, 0.0)])
    next_n: int = 1
    failed: Counter[str] = field(default_factory=Counter)

    def stale(self, answers: list[tuple[str, float, int]]) -> int:
        times = [at for _, at in self.acknowledged]
        count = 0
        for _, sent, seen in answers:
            newest = self.acknowledged[bisect.bisect_right(times, sent) - 1][0]
            count += seen < newest
        return count


@dataclass
class Run:
    """One scenario under way: what the fault injection notes, and the checks it failed."""

    stack: Stack
    knobs: Knobs
    writes: Writes
    slug: str
    load: asyncio.Task[Tally] | None = None
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def check(self, ok: bool, note: str) -> None:
        self.notes.append(note if ok else f"FAILED: {note}")
        if not ok:
            self.problems.append(note)

    def loading(self) -> bool:
        return self.load is not None and not self.load.done()


async def _until(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Seconds it took for `condition` to hold."""
    start = time.monotonic()
    deadline = start + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.1)
    return time.monotonic() - start


async def _answers(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


def _mount_tmpfs(folder: Path, megabytes: int) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700", "tmpfs", str(folder)],
                             capture_output=True)
    return mounted.returncode == 0


async def start_stack(root: Path, knobs: Knobs) -> Stack:
    services = EmbeddedServices(root / "servers", persistent=True)
    await asyncio.to_thread(services.start)
    journal = root / "journal"
    tmpfs = os.environ.get("CHAOS_JOURNAL_TMPFS", "1") != "0" and _mount_tmpfs(journal, 64)
    try:
        edge, api = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        # A killed ingest worker's unacknowledged entries are claimed by its successor after this idle time
        # (default 60 s); 5 s keeps each scenario short.
        env = {"INGEST_CLAIM_IDLE_MS": "5000", **os.environ, "EDGE_BIND": edge, "CONTROL_PLANE_BIND": api,
               "DEFAULT_DOMAIN": edge, "PYTHONUNBUFFERED": "1", "DATABASE_URL": services.database_url,
               "REDIS_URL": services.redis_url, "EDGE_WORKERS": str(knobs.edge_workers),
               "EDGE_JOURNAL_DIR": str(journal), "RATE_LIMIT_PER_SECOND": "100000", "RATE_LIMIT_BURST": "100000",
               # journal-full fills the disk itself: no reserve kept free, so the write meets a full disk
               "EDGE_JOURNAL_MIN_FREE_MB": "0"}
        log = open(root / "up.log", "ab")
        process = subprocess.Popen([sys.executable, "-m", "control_plane.cli", "up"], cwd=root, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
        log.close()
        async with aiohttp.ClientSession() as session:
            await _until(lambda: _ready(process, session, edge, api), START_TIMEOUT, "scanroute up")
    except BaseException:
        await asyncio.to_thread(services.stop)
        if tmpfs:
            subprocess.run(["umount", str(journal)], check=False)
        raise
    key = (root / ".scanroute" / "demo_key").read_text().strip()
    services_env = dotenv_values(root / ".scanroute" / "services.env")
    return Stack(root, services, process, f"http://{edge}", f"http://{api}", key, str(services_env["DATABASE_URL"]),
                 str(services_env["REDIS_URL"]), journal, tmpfs)


async def _ready(process: subprocess.Popen[bytes], session: aiohttp.ClientSession, edge: str, api: str) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"scanroute up exited with {process.returncode}")
    return await _answers(session, f"http://{edge}/healthz") and await _answers(session, f"http://{api}/healthz")


def stop_stack(stack: Stack) -> None:
    stack.process.send_signal(signal.SIGTERM)
    try:
        stack.process.wait(60)
    except subprocess.TimeoutExpired:
        stack.process.kill()
        stack.process.wait()
    stack.services.stop()
    if stack.journal_tmpfs:
        subprocess.run(["umount", str(stack.journal)], check=False)


async def make_code(stack: Stack) -> tuple[str, str]:
    async with aiohttp.ClientSession() as session, session.post(
            f"{stack.api}/v1/qr-codes", headers=stack.headers(),
            json={"destination": {"type": "url", "url": DESTINATION.format(n=0)}}) as response:
        code = await response.json()
        if response.status != 201:
            raise RuntimeError(f"could not create a code: {code}")
        return str(code["slug"]), str(code["id"])


async def scan_load(stack: Stack, slug: str, scenario: str, seconds: float, concurrency: int,
                    scans: int | None = None) -> Tally:
    """Scans for `seconds`, or until `scans` were answered 302 when given."""
    tally = Tally(last_answer=time.monotonic())
    deadline = time.monotonic() + seconds
    counter = iter(range(10**9))
    timeout = aiohttp.ClientTimeout(total=5)

    def going() -> bool:
        return time.monotonic() < deadline if scans is None else len(tally.answered) < scans

    async def worker(session: aiohttp.ClientSession) -> None:
        while going():
            referer = f"{REFERER_BASE}{scenario}/{next(counter)}"
            sent = time.monotonic()
            seen, why = -1, ""
            try:
                async with session.get(f"{stack.edge}/{slug}", allow_redirects=False, timeout=timeout,
                                       headers={"Referer": referer, "User-Agent": "Mozilla/5.0 (iPhone)"}) as r:
                    written = WRITTEN.search(r.headers.get("Location", ""))
                    if r.status == 302 and written:
                        seen = int(written.group(1))
                    else:
                        why = str(r.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                why = type(exc).__name__
            now = time.monotonic()
            if seen >= 0:
                tally.longest_gap = max(tally.longest_gap, now - tally.last_answer)
                tally.last_answer = now
                tally.answered.append((referer, sent, seen))
            else:
                tally.failed += 1
                tally.failures[why] += 1
                await asyncio.sleep(0.05)  # a refused connection returns at once: do not spin

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    tally.longest_gap = max(tally.longest_gap, time.monotonic() - tally.last_answer)
    return tally


async def _fetch(stack: Stack, query: str, *args: object) -> list[asyncpg.Record]:
    """The run's own reads, patient with a machine so busy that connecting takes seconds."""
    deadline = time.monotonic() + 120
    while True:
        try:
            conn = await asyncpg.connect(stack.database_url, timeout=30)
            try:
                return list(await conn.fetch(query, *args, timeout=60))
            finally:
                await conn.close()
        except (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                asyncpg.CannotConnectNowError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)


async def stored(stack: Stack, scenario: str) -> dict[str, int]:
    rows = await _fetch(stack, "SELECT referer, count(*) AS n FROM scans WHERE starts_with(referer, $1)"
                               " GROUP BY referer", f"{REFERER_BASE}{scenario}/")
    return {row["referer"]: row["n"] for row in rows}


async def dead_letters(stack: Stack) -> int:
    return int((await _fetch(stack, "SELECT count(*) AS n FROM scan_dead_letters"))[0]["n"])


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
        await asyncio.sleep(0.25)


async def stream_backlog(stack: Stack) -> tuple[int, int]:
    """The ingest group's entries not yet read and read but not acknowledged (pending)."""
    stream = RedisKeys("sr").scans
    client = aioredis.Redis.from_url(stack.redis_url, socket_timeout=30)
    try:
        for group in await client.xinfo_groups(stream):
            if group["name"] in (INGEST_GROUP, INGEST_GROUP.encode()):
                last = group["last-delivered-id"]
                start = b"(" + (last if isinstance(last, bytes) else last.encode())
                unread: list[Any] = await client.xrange(stream, min=start)  # type: ignore[assignment]
                return len(unread), int(group["pending"])
    finally:
        await client.aclose()
    return 0, 0


# --- faults -------------------------------------------------------------------------------------------------

async def _back(stack: Stack, kind: str, victim: int) -> bool:
    child = stack.status().get(kind, {})
    return child.get("state") == "running" and child.get("pid") not in (None, victim)


async def kill_repeatedly(run: Run, kind: str, sig: int, every: float, times: int | None = None) -> None:
    """Kill `kind` every `every` seconds, `times` times or for as long as the load runs (at least once)."""
    stack, killed = run.stack, 0
    while (killed < times) if times is not None else run.loading() or not killed:
        await asyncio.sleep(every)
        if times is None and not run.loading() and killed:
            break
        victim = stack.pid(kind)
        os.kill(victim, sig)
        killed += 1
        back = await _until(lambda victim=victim: _back(stack, kind, victim),  # type: ignore[misc]
                            RESTART_TIMEOUT, f"{kind} restarted")
        run.notes.append(f"{kind} {signal.Signals(sig).name} #{killed}: restarted in {back:.1f} s")


async def _edge_answers(stack: Stack) -> bool:
    async with aiohttp.ClientSession() as session:
        return await _answers(session, f"{stack.edge}/healthz")


async def signal_edge_workers(run: Run, sig: int, which: str) -> None:
    """`which`: "each" edge process in turn, "one" of them, or "parent" (the edge under `scanroute up`)."""
    stack = run.stack
    await asyncio.sleep(2)
    before = stack.edge_workers()
    parent = [stack.pid("edge")] if before != [stack.pid("edge")] else []  # several processes: their parent too
    victims = before + parent if which == "each" else before[:1] if which == "one" else [stack.pid("edge")]
    for victim in victims:
        os.kill(victim, sig)

        async def replaced(victim: int = victim) -> bool:
            now = stack.edge_workers()
            return victim not in now and len(now) == len(before) and await _edge_answers(stack)

        back = await _until(replaced, RESTART_TIMEOUT, "the edge process replaced")
        what = "the edge's parent" if victim in parent or which == "parent" else f"edge process {victim}"
        run.notes.append(f"{signal.Signals(sig).name} to {what}: replaced in {back:.1f} s")
        run.check(back < 10, f"{what} back within 10 s")
        await asyncio.sleep(1.5)


async def pause_redis(run: Run, seconds: float) -> None:
    await asyncio.sleep(2)
    client = aioredis.Redis.from_url(run.stack.redis_url, socket_timeout=5)
    try:
        await client.client_pause(int(seconds * 1000), all=True)
    finally:
        await client.aclose()


SENTINEL = "chaos:sentinel"  # outside the stack's namespace: tells that Redis came back with its data


async def restart_redis(run: Run, times: int, down: float) -> None:
    stack = run.stack
    for restart in range(1, times + 1):
        await asyncio.sleep(2)
        client = aioredis.Redis.from_url(stack.redis_url, socket_timeout=5)
        try:
            await client.set(SENTINEL, str(restart))
            keys_before = await client.dbsize()
        finally:
            await client.aclose()
        await asyncio.to_thread(stack.services.stop_redis)
        await asyncio.sleep(down)
        await asyncio.to_thread(stack.services.start_redis)
        client = aioredis.Redis.from_url(stack.redis_url, socket_timeout=5)
        try:
            kept = await client.get(SENTINEL) == str(restart).encode()
            keys_after = await client.dbsize()
        finally:
            await client.aclose()
        run.check(kept, f"Redis restart #{restart} (down {down:g} s): data kept ({keys_before} keys before, "
                        f"{keys_after} after)")


async def write_while(run: Run, every: float) -> None:
    """The admin: rewrite the code's destination every `every` seconds while the load runs."""
    writes = run.writes
    async with aiohttp.ClientSession() as session:
        while run.loading():
            n, writes.next_n = writes.next_n, writes.next_n + 1
            try:
                async with session.patch(f"{run.stack.api}/v1/qr-codes/{writes.code_id}", headers=run.stack.headers(),
                                         json={"destination": {"type": "url", "url": DESTINATION.format(n=n)}},
                                         timeout=aiohttp.ClientTimeout(total=10)) as response:
                    await response.read()
                    if response.status == 200:
                        writes.acknowledged.append((n, time.monotonic()))
                    else:
                        writes.failed[str(response.status)] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                writes.failed[type(exc).__name__] += 1
            await asyncio.sleep(every)


async def restart_redis_under_writes(run: Run, down: float) -> None:
    before = len(run.writes.acknowledged)
    failed_before = sum(run.writes.failed.values())
    writer = asyncio.create_task(write_while(run, 0.2))
    await restart_redis(run, 1, down)
    await writer
    written = len(run.writes.acknowledged) - before
    failed = sum(run.writes.failed.values()) - failed_before
    run.check(failed == 0, f"admin writes: {written} acknowledged, {failed} refused or failed"
                           + (f" ({dict(run.writes.failed)})" if failed else ""))


async def _probe_api(session: aiohttp.ClientSession, stack: Stack) -> tuple[int, str, float]:
    started = time.monotonic()
    try:
        async with session.get(f"{stack.api}/v1/qr-codes?limit=1", headers=stack.headers(),
                               timeout=aiohttp.ClientTimeout(total=10)) as response:
            await response.read()
            return response.status, response.content_type, time.monotonic() - started
    except (aiohttp.ClientError, TimeoutError) as exc:
        return 0, type(exc).__name__, time.monotonic() - started


async def stop_postgres(run: Run, outage: float) -> None:
    stack = run.stack
    await asyncio.sleep(2)
    restarts = stack.restarts()
    await asyncio.to_thread(stack.services.stop_postgres)
    down_at = time.monotonic()
    probes = []
    async with aiohttp.ClientSession() as session:
        while time.monotonic() - down_at < outage:
            probes.append(await _probe_api(session, stack))
            await asyncio.sleep(0.5)
        await asyncio.to_thread(stack.services.start_postgres)

        async def api_answers() -> bool:
            return (await _probe_api(session, stack))[0] == 200

        recovered = await _until(api_answers, RESTART_TIMEOUT, "the API answering after PostgreSQL is back")
    good = [p for p in probes if p[0] == 503 and p[1] == "application/problem+json" and p[2] <= API_DOWN_ANSWER]
    bad = Counter(f"{status or kind}" + (f" in {seconds:.1f} s" if seconds > API_DOWN_ANSWER else "")
                  for status, kind, seconds in probes if (status, kind, seconds) not in good)
    slowest = max((p[2] for p in probes), default=0.0)
    run.check(not bad and bool(probes), f"API while PostgreSQL was down {outage:g} s: {len(good)}/{len(probes)} "
                                        f"probes answered 503 problem+json, slowest {slowest:.2f} s"
                                        + (f"; other answers: {dict(bad)}" if bad else ""))
    restarted = stack.restarts() - restarts
    run.check(not restarted, f"API answered 200 {recovered:.1f} s after PostgreSQL was back, with no process "
                             f"restarted" if not restarted else f"processes restarted: {dict(restarted)}")


async def _redirects(stack: Stack, slug: str) -> bool:
    """One scan outside every scenario's accounting (its own Referer): is the edge redirecting?"""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(f"{stack.edge}/{slug}", allow_redirects=False, headers={
                    "Referer": f"{REFERER_BASE}probe/"}, timeout=aiohttp.ClientTimeout(total=2)) as response:
                return response.status == 302
        except (aiohttp.ClientError, TimeoutError):
            return False


async def fill_journal_disk(run: Run, down: float) -> None:
    """Redis stopped, so that the edge journals every scan, on a file system left with 1 MiB free (a tmpfs
    filled with a file), or with a 1 MiB file-size limit on each edge process (`prlimit --fsize`) when the
    run cannot mount one."""
    stack = run.stack
    await asyncio.sleep(2)
    filler = stack.journal / "filler"
    workers = stack.edge_workers()
    if stack.journal_tmpfs:
        free = os.statvfs(stack.journal)
        size = free.f_bavail * free.f_frsize - (1 << 20)
        with filler.open("wb") as file:
            os.posix_fallocate(file.fileno(), 0, size)
        how = f"tmpfs filled to 1 MiB free ({size >> 20} MiB filler)"
    else:
        for pid in workers:
            subprocess.run(["prlimit", f"--pid={pid}", f"--fsize={1 << 20}"], check=True)
        how = f"prlimit --fsize=1MiB on {len(workers)} edge processes"
    await asyncio.to_thread(stack.services.stop_redis)
    await asyncio.sleep(down)
    if stack.journal_tmpfs:
        filler.unlink()
    else:
        for pid in workers:
            subprocess.run(["prlimit", f"--pid={pid}", "--fsize=unlimited"], check=False)
    await asyncio.to_thread(stack.services.start_redis)
    slug = run.slug
    back = await _until(lambda: _redirects(stack, slug), RESTART_TIMEOUT, "the edge redirecting again")
    run.notes.append(f"{how}, Redis stopped {down:g} s; redirecting again {back:.1f} s after the space came back")


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    inject: Callable[[Run], Awaitable[None]]
    seconds: Callable[[Knobs], float]  # scan load length (or its upper bound when `scans` is given)
    edge_untouched: bool  # the fault must not cost a single request
    scans: Callable[[Knobs], int | None] = lambda k: None  # scan until this many were answered


def _base(k: Knobs) -> float:
    return k.seconds


SCENARIOS = [
    Scenario("ingest-kill9", "kill -9 the ingest worker every {kill_every:g} s during {kill_scans} scans",
             lambda r: kill_repeatedly(r, "ingest", signal.SIGKILL, r.knobs.kill_every),
             lambda k: 3600, True, lambda k: k.kill_scans),
    Scenario("webhooks-kill9", "kill -9 the webhook dispatcher",
             lambda r: kill_repeatedly(r, "webhooks", signal.SIGKILL, 2, 1), _base, True),
    Scenario("control-plane-kill9", "kill -9 the control plane",
             lambda r: kill_repeatedly(r, "control-plane", signal.SIGKILL, 2, 1), _base, True),
    Scenario("redis-pause", "Redis CLIENT PAUSE ALL for 4 s", lambda r: pause_redis(r, 4), _base, True),
    Scenario("redis-restart", "Redis stopped {redis_down:g} s and started with its data, twice",
             lambda r: restart_redis(r, 2, r.knobs.redis_down),
             lambda k: max(k.seconds, 2 * (k.redis_down + 2) + 4), True),
    Scenario("redis-restart-writes", "Redis stopped {redis_down:g} s and started while an admin rewrites the code",
             lambda r: restart_redis_under_writes(r, r.knobs.redis_down),
             lambda k: max(k.seconds, k.redis_down + 6), True),
    Scenario("postgres-stop", "PostgreSQL stopped {pg_outage:g} s (fast shutdown), then started",
             lambda r: stop_postgres(r, r.knobs.pg_outage), lambda k: max(k.seconds, k.pg_outage + 8), True),
    Scenario("edge-sigterm", "SIGTERM each of {edge_workers} edge processes in turn, then their parent",
             lambda r: signal_edge_workers(r, signal.SIGTERM, "each"), _base, True),
    Scenario("edge-kill9", "kill -9 one of {edge_workers} edge processes",
             lambda r: signal_edge_workers(r, signal.SIGKILL, "one"), _base, False),
    Scenario("edge-parent-kill9", "kill -9 the edge's parent process (scanroute up restarts it)",
             lambda r: signal_edge_workers(r, signal.SIGKILL, "parent"), _base, True),
    Scenario("journal-full", "the journal's disk full while Redis is stopped {redis_down:g} s",
             lambda r: fill_journal_disk(r, r.knobs.redis_down), lambda k: max(k.seconds, k.redis_down + 8), False),
]


@dataclass
class Result:
    scenario: Scenario
    what: str
    answered: int
    failed: int
    failures: Counter[str]
    lost: int
    duplicated: int
    stale: int
    longest_gap: float
    restarts: int
    dead_lettered: int
    caught_up: float | None  # seconds after the load until every answered scan was stored
    notes: list[str]
    problems: list[str]

    @property
    def passed(self) -> bool:
        return (self.lost == 0 and self.duplicated == 0 and self.stale == 0 and self.dead_lettered == 0
                and not self.problems and (self.failed == 0 or not self.scenario.edge_untouched))


async def run_scenario(stack: Stack, slug: str, writes: Writes, scenario: Scenario, knobs: Knobs) -> Result:
    restarts_before = sum(stack.restarts().values())
    dead_before = await dead_letters(stack)
    run = Run(stack, knobs, writes, slug)
    run.load = asyncio.create_task(scan_load(stack, slug, scenario.name, scenario.seconds(knobs), knobs.concurrency,
                                             scenario.scans(knobs)))
    try:
        await scenario.inject(run)
    except Exception as exc:  # the fault could not be injected as planned: a finding, not a crash of the run
        run.check(False, f"{type(exc).__name__}: {exc}")
    tally = await run.load
    load_end = time.monotonic()
    rows = await drain(stack, scenario.name, len(tally.answered), knobs.drain)
    answered = {referer for referer, _, _ in tally.answered}
    lost = len(answered - rows.keys())
    caught_up = time.monotonic() - load_end if not lost else None
    duplicated = sum(n - 1 for n in rows.values() if n > 1)
    lag, pending = await stream_backlog(stack)
    if lag or pending:
        run.notes.append(f"scan stream after the drain: {lag} unread, {pending} pending")
    if tally.failures:
        run.notes.append(f"failed requests: {dict(tally.failures)}")
    return Result(scenario, scenario.what.format(**knobs.__dict__), len(tally.answered), tally.failed,
                  tally.failures, lost, duplicated, writes.stale(tally.answered), tally.longest_gap,
                  sum(stack.restarts().values()) - restarts_before, await dead_letters(stack) - dead_before,
                  caught_up, run.notes, run.problems)


def table(results: list[Result], knobs: Knobs) -> str:
    lines = [f"chaos: {knobs.seconds:g} s of scans per scenario (longer where the fault needs it), "
             f"{knobs.concurrency} concurrent clients, scanroute up with {knobs.edge_workers} edge processes "
             "on loopback", "",
             "| scenario | fault | answered 302 | failed | lost | duplicated | stale | longest edge gap | restarts "
             "| dead-lettered | all stored | result |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        caught_up = f"{r.caught_up:.1f} s after" if r.caught_up is not None else "never"
        lines.append(f"| {r.scenario.name} | {r.what} | {r.answered} | {r.failed} | {r.lost} | {r.duplicated} | "
                     f"{r.stale} | {r.longest_gap:.2f} s | {r.restarts} | {r.dead_lettered} | {caught_up} | "
                     f"{'pass' if r.passed else 'FAIL'} |")
    lines.append("")
    for r in results:
        if r.notes:
            lines.append(f"- {r.scenario.name}: " + "; ".join(r.notes))
    return "\n".join(lines)


async def main_async(root: Path) -> int:
    knobs = Knobs.from_env()
    chosen = [n for n in os.environ.get("CHAOS_SCENARIOS", "").split(",") if n]
    scenarios = [s for s in SCENARIOS if not chosen or s.name in chosen]
    if unknown := set(chosen) - {s.name for s in SCENARIOS}:
        print(f"unknown scenarios: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    stack = await start_stack(root, knobs)
    results = []
    try:
        slug, code_id = await make_code(stack)
        writes = Writes(code_id, [(0, time.monotonic())])
        for scenario in scenarios:
            print(f"chaos: {scenario.name} ({scenario.what.format(**knobs.__dict__)}) …", flush=True)
            results.append(await run_scenario(stack, slug, writes, scenario, knobs))
    finally:
        await asyncio.to_thread(stop_stack, stack)
    print(table(results, knobs))
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

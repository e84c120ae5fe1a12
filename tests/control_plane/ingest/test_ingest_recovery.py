"""The ingest worker under failure: poison entries, dead consumers, kill -9, several workers at once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from control_plane.ingest import expiry as expiry_module
from control_plane.ingest import hours as hours_module
from control_plane.ingest import scan_row as scan_row_module
from control_plane.ingest.partitions import _runs
from control_plane.ingest.worker import IngestWorker
from shared.database import create_pool
from shared.keys import INGEST_GROUP, SCAN_FIELD, RedisKeys
from shared.processes import spawn, stop
from shared.scan_event import ScanEvent
from shared.settings import IngestSettings
from tests.conftest import ROOT, KeyFactory, bearer
from tests.control_plane.ingest.test_enrich import GOOGLEBOT_UA, IPHONE_SAFARI
from tests.edge.private_redis import PrivateRedis


@pytest.fixture
async def code(api: httpx.AsyncClient, make_key: KeyFactory, db: asyncpg.Connection[Any]) -> dict[str, Any]:
    key = await make_key()
    created = (await api.post("/v1/qr-codes", headers=bearer(key), json={})).json()
    return dict(await db.fetchrow("SELECT id, org_id FROM qr_codes WHERE id = $1", created["id"]))


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    yield pool
    await pool.close()


def make_worker(settings: IngestSettings, pool: asyncpg.Pool[Any], redis: aioredis.Redis,
                **changes: Any) -> IngestWorker:
    return IngestWorker(replace(settings, **changes), pool, redis)


def scan(code: dict[str, Any], user_agent: str = IPHONE_SAFARI, **changes: Any) -> ScanEvent:
    event = ScanEvent(str(uuid.uuid4()), int(time.time() * 1000), code["id"], None, code["org_id"], True,
                      "redirected", "GET", True, "ip", "visitor", user_agent)
    return replace(event, **changes)


async def add(redis: aioredis.Redis, stream: str, payloads: list[bytes]) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for payload in payloads:
            pipe.xadd(stream, {SCAN_FIELD: payload})
        await pipe.execute()


async def wait_for(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def run_until(worker: IngestWorker, check: Any) -> None:
    stop_event = asyncio.Event()
    task = asyncio.create_task(worker.run(stop_event))
    try:
        await wait_for(check, 20)
    finally:
        stop_event.set()
        await asyncio.wait_for(task, 10)


async def test_poison_entries_are_dead_lettered_and_do_not_block(
        ingest_settings: IngestSettings, pool: asyncpg.Pool[Any], redis: aioredis.Redis, redis_namespace: str,
        code: dict[str, Any], db: asyncpg.Connection[Any]) -> None:
    stream = RedisKeys(redis_namespace).scans
    good = [scan(code) for _ in range(10)]
    poison = [scan(code, referer="nul\x00byte").encode(),  # valid JSON that PostgreSQL refuses
              scan(code, scan_id="not-a-uuid").encode(), b"not json"]
    await add(redis, stream, [good[0].encode(), *poison, *(e.encode() for e in good[1:])])
    worker = make_worker(ingest_settings, pool, redis)
    await run_until(worker, lambda: db.fetchval("SELECT count(*) = 10 FROM scans"))

    letters = await db.fetch("SELECT payload, error FROM scan_dead_letters ORDER BY id")
    assert sorted(bytes(r["payload"]) for r in letters) == sorted(poison)
    assert await db.fetchval("SELECT scan_count FROM qr_codes WHERE id = $1", code["id"]) == 10
    assert (await redis.xpending(stream, INGEST_GROUP))["pending"] == 0


LAST_HOUR_OF_9999 = 253_402_299_000_000  # 9999-12-31T23:30:00Z: a datetime, but its hour has no next hour


async def test_an_entry_dated_in_the_last_hour_of_9999_is_dead_lettered_not_fatal(
        ingest_settings: IngestSettings, pool: asyncpg.Pool[Any], redis: aioredis.Redis, redis_namespace: str,
        code: dict[str, Any], db: asyncpg.Connection[Any]) -> None:
    """It used to stop every worker for good: working out the hour after it overflowed, outside the per-entry
    checks and before an attempt was counted, at every delivery and on every worker that claimed it."""
    stream = RedisKeys(redis_namespace).scans
    await add(redis, stream, [scan(code, ts_ms=LAST_HOUR_OF_9999).encode(), scan(code).encode()])
    stop_event = asyncio.Event()
    task = asyncio.create_task(make_worker(ingest_settings, pool, redis).run(stop_event))
    deadline = time.monotonic() + 5
    while not task.done() and not await _stored(db) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop_event.set()
    await asyncio.wait_for(task, 10)  # raised OverflowError('date value out of range')
    assert await _stored(db) == 1
    assert [r["error"] for r in await db.fetch("SELECT error FROM scan_dead_letters")] == [
        "undecodable: ValidationError('Expected `int` <= 253402214399999 - at `$.ts_ms`')"]
    assert (await redis.xpending(stream, INGEST_GROUP))["pending"] == 0


@pytest.mark.parametrize("stage", ["decoding", "summarising"])
async def test_an_entry_that_fails_in_any_way_before_it_is_stored_is_set_aside_alone(
        stage: str, monkeypatch: pytest.MonkeyPatch, ingest_settings: IngestSettings, pool: asyncpg.Pool[Any],
        redis: aioredis.Redis, code: dict[str, Any], db: asyncpg.Connection[Any]) -> None:
    """Decoding and counting an entry touch nothing else: whatever goes wrong there would go wrong at every
    delivery, so the entry is a dead letter and the rest of its batch goes in, each scan counted once."""
    def failing_on_odd(original: Any) -> Any:
        def wrapped(value: str, *args: Any) -> Any:
            if value == "odd":
                raise KeyError(value)  # none of the errors a bad field is known to cause
            return original(value, *args)
        return wrapped
    if stage == "decoding":
        monkeypatch.setattr(scan_row_module, "enrich", failing_on_odd(scan_row_module.enrich))
        odd = scan(code, user_agent="odd")
    else:
        monkeypatch.setattr(hours_module, "_register", failing_on_odd(hours_module._register))
        odd = scan(code, visitor_hash="odd")
    worker = make_worker(ingest_settings, pool, redis)
    await worker.ensure_group()
    events = [scan(code), scan(code), odd, scan(code)]
    await worker.ingest([(f"1-{i}".encode(), {SCAN_FIELD: e.encode()}) for i, e in enumerate(events)])
    assert await _stored(db) == 3
    assert [bytes(r["payload"]) for r in await db.fetch("SELECT payload FROM scan_dead_letters")] == [odd.encode()]
    assert await db.fetchval("SELECT sum(scans) FROM scan_hours") == 3  # not the odd one, even in part
    assert await db.fetchval("SELECT scan_count FROM qr_codes WHERE id = $1", code["id"]) == 3


async def test_entries_of_a_dead_consumer_are_claimed_however_often_they_were_delivered(
        ingest_settings: IngestSettings, pool: asyncpg.Pool[Any], redis: aioredis.Redis, redis_namespace: str,
        code: dict[str, Any], db: asyncpg.Connection[Any]) -> None:
    stream = RedisKeys(redis_namespace).scans
    worker = make_worker(ingest_settings, pool, redis, claim_idle_ms=100, max_attempts=3)
    await worker.ensure_group()
    await add(redis, stream, [scan(code).encode() for _ in range(5)])
    reply = await redis.xreadgroup(INGEST_GROUP, "crashed", {stream: ">"}, count=5)  # never acknowledged
    for _ in range(10):  # delivered again and again (re-read, claimed), but never tried: no failed attempt
        await redis.xclaim(stream, INGEST_GROUP, "crashed", 0, [entry_id for entry_id, _ in reply[0][1]])
    await asyncio.sleep(0.15)

    await worker.claim_from_dead_consumers()

    assert await db.fetchval("SELECT count(*) FROM scans") == 5
    assert await db.fetchval("SELECT count(*) FROM scan_dead_letters") == 0
    assert (await redis.xpending(stream, INGEST_GROUP))["pending"] == 0


async def test_an_entry_that_keeps_failing_is_set_aside_after_its_attempts_and_its_batch_goes_in(
        ingest_settings: IngestSettings, pool: asyncpg.Pool[Any], redis: aioredis.Redis, redis_namespace: str,
        code: dict[str, Any], db: asyncpg.Connection[Any]) -> None:
    # An error that is neither an outage nor a rejected value: PostgreSQL refuses this one scan, every time.
    await db.execute("""
        CREATE FUNCTION refuse_cursed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.referer = 'cursed' THEN RAISE EXCEPTION 'cursed scan'; END IF; RETURN NEW; END $$;
        CREATE TRIGGER refuse_cursed BEFORE INSERT ON scans FOR EACH ROW EXECUTE FUNCTION refuse_cursed();""")
    stream = RedisKeys(redis_namespace).scans
    cursed = scan(code, referer="cursed")
    await add(redis, stream, [scan(code).encode(), cursed.encode(), *(scan(code).encode() for _ in range(8))])
    worker = make_worker(ingest_settings, pool, redis, max_attempts=3)
    await run_until(worker, lambda: db.fetchval("SELECT count(*) = 1 FROM scan_dead_letters"))

    letter = await db.fetchrow("SELECT payload, error FROM scan_dead_letters")
    assert bytes(letter["payload"]) == cursed.encode()
    assert "cursed scan" in letter["error"]
    assert await db.fetchval("SELECT count(*) FROM scans") == 9
    assert await db.fetchval("SELECT scan_count FROM qr_codes WHERE id = $1", code["id"]) == 9
    assert (await redis.xpending(stream, INGEST_GROUP))["pending"] == 0
    assert await redis.exists(RedisKeys(redis_namespace).scan_attempts) == 0  # nothing left to count


def unreachable_database_url(database_url: str) -> str:
    """The same database on a port where nothing listens: PostgreSQL is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    parts = urlsplit(database_url)
    netloc = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit((parts.scheme, f"{netloc}127.0.0.1:{port}", parts.path, parts.query, parts.fragment))


async def times_delivered(redis: aioredis.Redis, stream: str) -> list[int]:
    pending = await redis.xpending_range(stream, INGEST_GROUP, "-", "+", 1000)
    return [p["times_delivered"] for p in pending]


async def test_no_scan_is_dead_lettered_after_a_database_outage_and_restarts(
        ingest_settings: IngestSettings, pool: asyncpg.Pool[Any], redis: aioredis.Redis, redis_namespace: str,
        code: dict[str, Any], db: asyncpg.Connection[Any], database_url: str) -> None:
    stream = RedisKeys(redis_namespace).scans
    total = 50
    await make_worker(ingest_settings, pool, redis).ensure_group()
    await add(redis, stream, [scan(code).encode() for _ in range(total)])
    down = await create_pool(unreachable_database_url(database_url), min_size=0, max_size=2)
    try:
        # PostgreSQL is down: a worker retries (re-reading its pending entries), then is restarted under a new
        # name, claims them (XAUTOCLAIM) and retries again — every time, the delivery counts rise.
        for consumer, delivered in (("before-restart", 4), ("after-restart", 8)):
            worker = make_worker(ingest_settings, down, redis, consumer=consumer, claim_idle_ms=100, max_attempts=2)
            await run_until(worker, lambda n=delivered: _all_delivered(redis, stream, total, n))
    finally:
        await down.close()

    # PostgreSQL is back, and so is the worker (a new process: a new consumer name), which claims them.
    worker = make_worker(ingest_settings, pool, redis, consumer="back", claim_idle_ms=100, max_attempts=2)
    await run_until(worker, lambda: db.fetchval("SELECT count(*) = $1 FROM scans", total))

    assert await db.fetchval("SELECT count(*) FROM scan_dead_letters") == 0
    assert await db.fetchval("SELECT scan_count FROM qr_codes WHERE id = $1", code["id"]) == total
    assert (await redis.xpending(stream, INGEST_GROUP))["pending"] == 0


async def _all_delivered(redis: aioredis.Redis, stream: str, total: int, times: int) -> bool:
    counts = await times_delivered(redis, stream)
    return len(counts) == total and min(counts) >= times


async def test_trimming_keeps_unread_and_pending_entries(
        ingest_settings: IngestSettings, pool: asyncpg.Pool[Any], redis: aioredis.Redis, redis_namespace: str,
        code: dict[str, Any]) -> None:
    stream = RedisKeys(redis_namespace).scans
    worker = make_worker(ingest_settings, pool, redis)
    await worker.ensure_group()
    await add(redis, stream, [scan(code).encode() for _ in range(5)])
    await worker.ingest(await worker.stream.read(">", 100, None))
    await add(redis, stream, [scan(code).encode() for _ in range(3)])
    await redis.xreadgroup(INGEST_GROUP, "slow", {stream: ">"}, count=3)  # pending elsewhere
    await add(redis, stream, [scan(code).encode() for _ in range(2)])  # not read by anyone yet

    await worker.stream.trim_acknowledged()
    assert await redis.xlen(stream) == 5

    await worker.ingest(await worker.stream.read(">", 100, None))
    slow = await redis.xpending_range(stream, INGEST_GROUP, "-", "+", 10, consumername="slow")
    await redis.xack(stream, INGEST_GROUP, *[p["message_id"] for p in slow])
    await worker.stream.trim_acknowledged()
    assert await redis.xlen(stream) == 0


async def test_threshold_events_fire_once_when_scan_count_reaches_100_and_1000(
        ingest_settings: IngestSettings, pool: asyncpg.Pool[Any], redis: aioredis.Redis,
        code: dict[str, Any], db: asyncpg.Connection[Any]) -> None:
    worker = make_worker(ingest_settings, pool, redis)

    async def ingest(events: list[ScanEvent]) -> None:
        await worker.ingest([(f"1-{i}".encode(), {SCAN_FIELD: e.encode()}) for i, e in enumerate(events)])

    first = [scan(code) for _ in range(99)] + [scan(code, user_agent=GOOGLEBOT_UA) for _ in range(5)]
    await ingest(first)
    assert await db.fetchval("SELECT count(*) FROM events WHERE type = 'qr.scan_threshold'") == 0
    second = [scan(code) for _ in range(1500)]
    await ingest(second)
    await ingest(second)  # redelivered: counts nothing, fires nothing
    rows = await db.fetch("SELECT org_id, data FROM events WHERE type = 'qr.scan_threshold' ORDER BY seq")
    objects = [json.loads(r["data"])["object"] for r in rows]
    assert [(o["threshold"], o["scan_count"]) for o in objects] == [(100, 1599), (1000, 1599)]
    assert {o["id"] for o in objects} == {code["id"]}
    assert {r["org_id"] for r in rows} == {code["org_id"]}
    assert await db.fetchval("SELECT scan_count FROM qr_codes WHERE id = $1", code["id"]) == 1599


def ingest_process(env: dict[str, str], consumer: str, batch_size: int = 1000) -> subprocess.Popen[bytes]:
    full_env = {**os.environ, **env, "INGEST_CONSUMER": consumer, "INGEST_BATCH_SIZE": str(batch_size),
                "INGEST_BLOCK_MS": "50", "INGEST_CLAIM_IDLE_MS": "500"}
    return spawn([sys.executable, "-m", "control_plane.cli", "ingest"], env=full_env, cwd=ROOT,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def exactly_once(db: asyncpg.Connection[Any], code_id: str, total: int) -> None:
    assert await db.fetchval("SELECT count(*) FROM scans") == total
    assert await db.fetchval("SELECT count(DISTINCT scan_id) FROM scans") == total
    assert await db.fetchval("SELECT scan_count FROM qr_codes WHERE id = $1", code_id) == total


@pytest.mark.e2e
async def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(
        env: dict[str, str], redis: aioredis.Redis, redis_namespace: str, code: dict[str, Any],
        db: asyncpg.Connection[Any]) -> None:
    total = 20_000
    await add(redis, RedisKeys(redis_namespace).scans, [scan(code).encode() for _ in range(total)])
    first = ingest_process(env, "doomed", batch_size=500)  # small batches: it is killed long before the end
    try:
        await wait_for(lambda: db.fetchval("SELECT count(*) > 0 FROM scans"))
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert await db.fetchval("SELECT count(*) FROM scans") < total, "the worker finished before it was killed"
    second = ingest_process(env, "successor")  # claims what "doomed" read but never acknowledged
    try:
        await wait_for(lambda: db.fetchval("SELECT count(*) = $1 FROM scans", total))
        await asyncio.sleep(0.3)  # room for a duplicate to show up, were there one
    finally:
        assert stop(second, signal.SIGTERM) == 0  # drains and exits cleanly
    await exactly_once(db, code["id"], total)
    assert (await redis.xpending(RedisKeys(redis_namespace).scans, INGEST_GROUP))["pending"] == 0


@pytest.mark.e2e
async def test_two_workers_at_once_insert_each_scan_once(
        env: dict[str, str], redis: aioredis.Redis, redis_namespace: str, code: dict[str, Any],
        db: asyncpg.Connection[Any]) -> None:
    total = 20_000
    workers = [ingest_process(env, name) for name in ("one", "two")]
    try:
        await add(redis, RedisKeys(redis_namespace).scans, [scan(code).encode() for _ in range(total)])
        await wait_for(lambda: db.fetchval("SELECT count(*) = $1 FROM scans", total))
        await asyncio.sleep(0.3)
    finally:
        codes = [stop(w, signal.SIGTERM) for w in workers]
    assert codes == [0, 0]
    await exactly_once(db, code["id"], total)


@pytest.mark.e2e
async def test_dead_letters_can_be_listed_and_replayed(
        env: dict[str, str], ingest_settings: IngestSettings, pool: asyncpg.Pool[Any], redis: aioredis.Redis,
        code: dict[str, Any], db: asyncpg.Connection[Any]) -> None:
    event = scan(code)
    await db.execute("INSERT INTO scan_dead_letters (stream_id, payload, error) VALUES ('1-1', $1, 'test')",
                     event.encode())
    run_env = {**os.environ, **env}

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "control_plane.cli", "dead-letters", *args], env=run_env,
                              cwd=ROOT, capture_output=True, timeout=30, check=True)
        return done.stdout.decode()

    listed = json.loads(cli("list", "--json"))
    assert [(d["error"], d["replayed_at"]) for d in listed] == [("test", None)]
    assert "replayed 1" in cli("replay")
    assert json.loads(cli("list", "--json")) == []
    worker = make_worker(ingest_settings, pool, redis)
    await run_until(worker, lambda: db.fetchval("SELECT count(*) = 1 FROM scans WHERE scan_id = $1",
                                                uuid.UUID(event.scan_id)))


async def test_connections_cut_mid_batch_by_the_server_are_an_outage(
        ingest_settings: IngestSettings, pool: asyncpg.Pool[Any], redis: aioredis.Redis, redis_namespace: str,
        code: dict[str, Any], db: asyncpg.Connection[Any]) -> None:
    """A fast shutdown (`pg_ctl stop -m fast`) ends each backend with an error in the middle of whatever it
    does, a COPY included; asyncpg can then fail to reset the connection with an InternalClientError. Found by
    `make chaos` (postgres-stop): the worker exited. It must retry like any outage, and lose nothing."""
    stream = RedisKeys(redis_namespace).scans
    total = 30_000
    worker = make_worker(ingest_settings, pool, redis, batch_size=3000)
    await worker.ensure_group()
    await add(redis, stream, [scan(code).encode() for _ in range(total)])
    stop_event = asyncio.Event()
    task = asyncio.create_task(worker.run(stop_event))
    try:
        cutting, deadline = time.monotonic() + 10, time.monotonic() + 70
        while await db.fetchval("SELECT count(*) FROM scans") < total:
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, "not every scan was stored in time"
            if time.monotonic() < cutting:  # then the server stays up, and every scan must go in
                await db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                 " WHERE datname = current_database() AND pid <> pg_backend_pid()")
            await asyncio.sleep(0.03)
    finally:
        stop_event.set()
        await asyncio.wait_for(task, 20)
    assert await db.fetchval("SELECT count(*) FROM scan_dead_letters") == 0
    assert await db.fetchval("SELECT count(DISTINCT scan_id) FROM scans") == total


DAY_MS = 86_400_000


async def _stored(db: asyncpg.Connection[Any]) -> int:
    stored: int = await db.fetchval("SELECT count(*) FROM scans")
    return stored


async def test_a_trim_never_takes_entries_another_worker_read_meanwhile(
        ingest_settings: IngestSettings, pool: asyncpg.Pool[Any], redis: aioredis.Redis, redis_namespace: str,
        code: dict[str, Any], db: asyncpg.Connection[Any]) -> None:
    """Worker B reads ten new entries while worker A trims (between A's two questions to Redis), then dies before
    storing them: they stay in the stream, and B, restarted, stores all ten."""
    stream = RedisKeys(redis_namespace).scans
    a = make_worker(ingest_settings, pool, redis, consumer="worker-a")
    b = make_worker(ingest_settings, pool, redis, consumer="worker-b")
    await a.ensure_group()
    await add(redis, stream, [scan(code).encode() for _ in range(10)])
    # B's XREADGROUP lands between A's two round trips (the pending list, the group's last delivered id),
    # whichever A asks first.
    read_by_b: list[Any] = []
    pending, group = redis.xpending, a.stream._group

    async def then_b_reads(answer: Any) -> Any:
        if not read_by_b:
            read_by_b.extend(await b.stream.read(">", 100, None))
        return answer

    async def pending_then_b_reads(*args: Any) -> Any:
        return await then_b_reads(await pending(*args))

    async def group_then_b_reads() -> Any:
        return await then_b_reads(await group())
    redis.xpending = pending_then_b_reads  # type: ignore[method-assign]
    a.stream._group = group_then_b_reads  # type: ignore[method-assign]
    try:
        await a.stream.trim_acknowledged()
    finally:
        del redis.xpending, a.stream._group
    assert len(read_by_b) == 10 and await redis.xlen(stream) == 10

    async def all_stored() -> bool:
        return await _stored(db) == 10
    await run_until(make_worker(ingest_settings, pool, redis, consumer="worker-b"), all_stored)
    assert await db.fetchval("SELECT count(*) FROM scan_dead_letters") == 0


async def test_a_full_redis_is_drained_not_waited_for(
        ingest_settings: IngestSettings, pool: asyncpg.Pool[Any], redis_namespace: str, code: dict[str, Any],
        db: asyncpg.Connection[Any], tmp_path: Path) -> None:
    """Redis at its maxmemory (noeviction) still reads, claims, acknowledges and trims — what frees it — but
    refuses XGROUP CREATE and HINCRBY: the worker stores the stream's scans, its own re-read ones included."""
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    full = aioredis.from_url(server.url)
    try:
        stream = RedisKeys(redis_namespace).scans
        worker = make_worker(ingest_settings, pool, full, consumer="worker-a", claim_idle_ms=100)
        await worker.ensure_group()
        await add(full, stream, [scan(code).encode() for _ in range(50)])
        await full.xreadgroup(INGEST_GROUP, "worker-a", {stream: ">"}, count=50)  # its own, left pending (kill -9)
        await add(full, stream, [scan(code).encode() for _ in range(50)])  # not read yet
        await full.config_set("maxmemory-policy", "noeviction")
        await full.config_set("maxmemory", "1")

        async def all_stored() -> bool:
            return await _stored(db) == 100
        await run_until(worker, all_stored)
        assert (await full.xpending(stream, INGEST_GROUP))["pending"] == 0
    finally:
        await full.aclose()
        server.stop()


async def test_a_scan_from_a_clock_years_off_creates_its_own_day_only(
        ingest_settings: IngestSettings, pool: asyncpg.Pool[Any], redis: aioredis.Redis, redis_namespace: str,
        code: dict[str, Any], db: asyncpg.Connection[Any]) -> None:
    """With a scan replayed from days ago in the same batch, a scan from an edge whose clock says 2010 used to
    ask for a partition of every day in between: a statement past the database's timeout, retried forever."""
    stream = RedisKeys(redis_namespace).scans
    now_ms = int(time.time() * 1000)
    await add(redis, stream, [scan(code).encode(), scan(code, ts_ms=now_ms - 3 * DAY_MS).encode(),
                              scan(code, ts_ms=40 * 365 * DAY_MS).encode(), scan(code).encode()])

    async def all_stored() -> bool:
        return await _stored(db) == 4
    await run_until(make_worker(ingest_settings, pool, redis), all_stored)
    assert await db.fetchval("SELECT count(*) FROM pg_inherits WHERE inhparent = 'scans'::regclass") < 30


def test_runs_of_consecutive_days() -> None:
    days = [date(2010, 1, 1), date(2026, 11, 28), date(2026, 11, 29), date(2026, 12, 1)]
    assert _runs(days) == [(date(2010, 1, 1), date(2010, 1, 1)), (date(2026, 11, 28), date(2026, 11, 29)),
                           (date(2026, 12, 1), date(2026, 12, 1))]


@pytest.mark.parametrize("failure", ["postgres", "bug"])
async def test_a_periodic_task_that_keeps_failing_never_stops_ingest(
        failure: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        ingest_settings: IngestSettings, pool: asyncpg.Pool[Any], redis: aioredis.Redis, redis_namespace: str,
        code: dict[str, Any], db: asyncpg.Connection[Any]) -> None:
    """The expiry sweep runs between two reads of the stream; failing at every run (a trigger refusing its
    update, a bug), it used to keep the worker from reading (a PostgreSQL error: retried before every read) or
    stop it (any other error). It is logged and tried again later, and the scans go in meanwhile."""
    await db.execute("UPDATE qr_codes SET valid_until = now() - interval '1 minute' WHERE id = $1", code["id"])
    if failure == "postgres":
        await db.execute("""
            CREATE FUNCTION refuse_expiry() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'expiry refused'; END $$;
            CREATE TRIGGER refuse_expiry BEFORE UPDATE OF expired_notified_at ON qr_codes
            FOR EACH ROW EXECUTE FUNCTION refuse_expiry();""")
    else:
        monkeypatch.setattr(expiry_module, "expired_object", lambda row: {}["no such key"])
    stream = RedisKeys(redis_namespace).scans
    worker = make_worker(ingest_settings, pool, redis)
    stop_event = asyncio.Event()
    task = asyncio.create_task(worker.run(stop_event))
    try:
        for total in (10, 20, 30):  # the sweep is due again in between
            await add(redis, stream, [scan(code).encode() for _ in range(10)])
            deadline = time.monotonic() + 5
            while await _stored(db) < total:
                assert not task.done(), task.exception()
                assert time.monotonic() < deadline, f"{await _stored(db)} of {total} scans stored"
                await asyncio.sleep(0.05)
            await asyncio.sleep(1)
    finally:
        stop_event.set()
        await asyncio.wait_for(task, 10)
    assert "ingest chore 'expiry' failed" in caplog.text
    assert worker.metrics.registry.get_sample_value("scanroute_ingest_failed_batches_total", {"kind": "error"}) == 0
    assert await db.fetchval("SELECT expired_notified_at FROM qr_codes WHERE id = $1", code["id"]) is None
    assert await db.fetchval("SELECT count(*) FROM scan_dead_letters") == 0


async def test_a_read_only_database_is_an_outage_and_dead_letters_nothing(
        ingest_settings: IngestSettings, pool: asyncpg.Pool[Any], redis: aioredis.Redis, redis_namespace: str,
        code: dict[str, Any], db: asyncpg.Connection[Any], database_url: str) -> None:
    """A failover that lands on a standby, or a provider's read-only mode on a full disk, refuses every write
    with SQLSTATE 25006 for as long as it lasts: an outage (docs/ingest.md), however often the scans are re-read."""
    stream = RedisKeys(redis_namespace).scans
    total = 20
    before = make_worker(ingest_settings, pool, redis)
    await before.ensure_group()
    await before.partitions.ensure_ahead()  # as a worker running before does: days known exist
    await add(redis, stream, [scan(code).encode() for _ in range(total)])
    name = await db.fetchval("SELECT current_database()")
    await db.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')  # every new session
    read_only = await create_pool(database_url, min_size=0, max_size=2)
    try:
        worker = make_worker(ingest_settings, read_only, redis, max_attempts=2)
        worker.partitions.known = before.partitions.known
        await run_until(worker, lambda: _all_delivered(redis, stream, total, 3))
    finally:
        await read_only.close()
        await db.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')

    await run_until(make_worker(ingest_settings, pool, redis, max_attempts=2),
                    lambda: db.fetchval("SELECT count(*) = $1 FROM scans", total))
    assert await db.fetchval("SELECT count(*) FROM scan_dead_letters") == 0
    assert (await redis.xpending(stream, INGEST_GROUP))["pending"] == 0

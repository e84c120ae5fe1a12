"""Attempts of one job: a stalled attempt never harms the one that took over from it, and an attempt cut off
from PostgreSQL is followed by another."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

import control_plane.jobs.worker as worker_module
from control_plane.jobs import claims, importing
from control_plane.jobs.exporting import ExportRun
from control_plane.jobs.worker import JobWorker
from control_plane.services.cache import EdgeCache
from shared.keys import RedisKeys
from tests.conftest import KeyFactory, bearer
from tests.control_plane.jobs.conftest import mint_group, run_job


async def test_a_stalled_attempt_that_fails_leaves_the_file_of_the_attempt_that_finished(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker, db: asyncpg.Connection[Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    resume = asyncio.Event()

    class StallingRun(ExportRun):
        async def run(self) -> tuple[str, str]:
            if self.job["attempt"] == 1:  # stalls past its lease, comes back after the takeover, then errs
                await resume.wait()
                raise RuntimeError("the renderer broke")
            return await super().run()

    monkeypatch.setattr(worker_module, "ExportRun", StallingRun)
    key = await make_key()
    group_id, _ = await mint_group(api, key, 3)
    started = await api.post("/v1/exports", headers=bearer(key), json={"format": "codes_csv", "group_id": group_id})
    export_id = started.json()["id"]
    stalled = await claims.claim(worker.db, 60)
    assert stalled is not None and stalled["attempt"] == 1
    first = asyncio.create_task(worker._process(stalled))
    await asyncio.sleep(0.1)
    await db.execute("UPDATE jobs SET heartbeat_at = now() - interval '1 hour' WHERE id = $1", export_id)
    assert await worker.run_once()  # attempt 2 takes the job over and finishes it
    assert (await api.get(f"/v1/exports/{export_id}", headers=bearer(key))).json()["status"] == "succeeded"
    file = await api.get(f"/v1/exports/{export_id}/file", headers=bearer(key))
    assert file.status_code == 200 and file.text.count("\r\n") == 4

    resume.set()
    await first  # attempt 1 fails, but the job is no longer its to end
    # An attempt that stalled before it even opened its file, opening it now.
    await worker.files.sink(export_id, 1)
    assert (await api.get(f"/v1/exports/{export_id}", headers=bearer(key))).json()["status"] == "succeeded"
    again = await api.get(f"/v1/exports/{export_id}/file", headers=bearer(key))
    assert again.status_code == 200 and again.content == file.content


@pytest.mark.parametrize("interrupt", ["pg_terminate_backend", "pg_cancel_backend"],
                         ids=["connection-dropped", "statement-cancelled"])
async def test_a_progress_update_cut_off_mid_export_gives_the_job_another_attempt(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker, db: asyncpg.Connection[Any],
        monkeypatch: pytest.MonkeyPatch, interrupt: str) -> None:
    """The worker's progress UPDATE waits on the row and is cut off once; the same statement succeeds later.
    pg_terminate_backend: its backend is terminated (a failover, a restarted pgbouncer, an administrator) while
    PostgreSQL stays up for everyone else. pg_cancel_backend: the statement is cancelled, as a `statement_timeout`
    on a slow server or an operator does."""
    real_progress = claims.progress
    interrupted: list[int] = []

    async def progress_cut_off_once(pool: Any, job: Any, done: int, total: int | None) -> None:
        if interrupted:
            return await real_progress(pool, job, done, total)
        async with db.transaction():
            await db.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", job["id"])
            update = asyncio.create_task(real_progress(pool, job, done, total))
            pid = None
            for _ in range(200):
                pid = await db.fetchval("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND"
                                        " wait_event_type = 'Lock' AND query LIKE '%UPDATE jobs SET progress_done%'")
                if pid:
                    break
                await asyncio.sleep(0.01)
            assert pid and await db.fetchval(f"SELECT {interrupt}($1)", pid)
            interrupted.append(pid)
        await update

    monkeypatch.setattr(claims, "progress", progress_cut_off_once)
    key = await make_key()
    group_id, _ = await mint_group(api, key, 3)
    started = await api.post("/v1/exports", headers=bearer(key), json={"format": "codes_csv", "group_id": group_id})
    job = await run_job(api, worker, key, f"/v1/exports/{started.json()['id']}")
    assert interrupted
    assert job["status"] == "succeeded", job["error"]
    assert await db.fetchval("SELECT attempt FROM jobs WHERE id = $1", job["id"]) == 2
    file = await api.get(f"/v1/exports/{job['id']}/file", headers=bearer(key))
    assert file.text.count("\r\n") == 4  # the header and the 3 codes, once


async def test_the_worker_loop_rides_out_too_many_connections_at_the_claim(
        worker: JobWorker, monkeypatch: pytest.MonkeyPatch) -> None:
    """A saturated server (53300 when the pool opens a connection) pauses the worker; it never exits."""
    real_claim = claims.claim
    claimed: list[int] = []

    async def claim(db: Any, lease: float) -> Any:
        claimed.append(1)
        if len(claimed) == 1:
            raise asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already")
        return await real_claim(db, lease)

    monkeypatch.setattr(claims, "claim", claim)
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.run(stop))
    async with asyncio.timeout(10):
        while len(claimed) < 2:
            assert not loop.done(), f"the worker loop ended on a transient error: {loop.exception()!r}"
            await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(loop, 10)


async def _a_long_export(api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker,
                         monkeypatch: pytest.MonkeyPatch, lease: float) -> tuple[asyncio.Event, str, str]:
    """An export of 3 codes, queued, whose drawing waits until the returned event is set (a long export, still
    drawing while its heartbeats come and go), for a worker whose lease is `lease` s (a heartbeat every quarter
    of it): (that event, the key, the export's id)."""
    resume = asyncio.Event()

    class WaitingRun(ExportRun):
        async def run(self) -> tuple[str, str]:
            await resume.wait()
            return await super().run()

    monkeypatch.setattr(worker_module, "ExportRun", WaitingRun)
    worker.settings = dataclasses.replace(worker.settings, lease=lease)
    key = await make_key()
    group_id, _ = await mint_group(api, key, 3)
    started = await api.post("/v1/exports", headers=bearer(key), json={"format": "codes_csv", "group_id": group_id})
    return resume, key, started.json()["id"]


async def test_a_heartbeat_cut_off_once_does_not_cancel_the_job(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker, db: asyncpg.Connection[Any],
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    resume, key, export_id = await _a_long_export(api, make_key, worker, monkeypatch, lease=2.0)  # beats every 0.5 s
    running = asyncio.create_task(worker.run_once())
    async with asyncio.timeout(30):
        while await db.fetchval("SELECT status FROM jobs WHERE id = $1", export_id) != "running":
            await asyncio.sleep(0.01)
    # The heartbeat's UPDATE waits on the row while its backend is terminated (a blip: a restarted pgbouncer,
    # an administrator); PostgreSQL answers again at once.
    holder = await asyncpg.connect(database_url, timeout=10)
    try:
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", export_id)
            pid = None
            async with asyncio.timeout(30):
                while not pid:
                    await asyncio.sleep(0.01)
                    pid = await db.fetchval(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND"
                        " wait_event_type = 'Lock' AND query LIKE 'UPDATE jobs SET heartbeat_at%'")
            assert await db.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await holder.close()
    await asyncio.sleep(1.5)  # heartbeats come and go
    assert not running.done(), "the job was cancelled on one failed heartbeat"
    resume.set()
    assert await asyncio.wait_for(running, 30)
    job = (await api.get(f"/v1/exports/{export_id}", headers=bearer(key))).json()
    assert job["status"] == "succeeded", job
    assert await db.fetchval("SELECT attempt FROM jobs WHERE id = $1", export_id) == 1


async def test_an_import_publishes_all_its_codes_while_its_heartbeat_finds_it_ended(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker, db: asyncpg.Connection[Any],
        redis: aioredis.Redis, redis_namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real_publish = EdgeCache.publish_codes

    async def slow_publish(cache: EdgeCache, pool: Any, code_ids: list[str]) -> None:
        await asyncio.sleep(0.3)  # a write-through that takes a while, as 10,000 codes' do
        await real_publish(cache, pool, code_ids)

    monkeypatch.setattr(EdgeCache, "publish_codes", slow_publish)
    monkeypatch.setattr(importing, "PUBLISH_SLICE", 1)
    worker.settings = dataclasses.replace(worker.settings, lease=0.4)  # a heartbeat every 0.1 s
    key = await make_key()
    rows = "".join(f"Table {n},https://example.com/{n}\n" for n in range(3))
    started = await api.post("/v1/imports", headers={**bearer(key), "Content-Type": "text/csv"},
                             content=f"name,url\n{rows}".encode())
    job = await run_job(api, worker, key, f"/v1/imports/{started.json()['id']}")
    assert job["status"] == "succeeded", job
    # The job ended when its codes committed; the codes are written through to the edges after that, all of
    # them, although the heartbeat finds the job no longer running meanwhile.
    keys = RedisKeys(redis_namespace)
    for code in await db.fetch("SELECT domain, slug FROM qr_codes"):
        assert await redis.exists(keys.code(code["domain"], code["slug"]))


async def test_a_heartbeat_that_fails_on_an_error_gives_the_job_up_and_says_why(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker, db: asyncpg.Connection[Any],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Not an outage (a trigger refusing the renewal): the lease cannot be kept, so the work stops, and the
    heartbeat's error is logged with the job, not left to asyncio's "exception never retrieved"."""
    _, _, export_id = await _a_long_export(api, make_key, worker, monkeypatch, lease=0.4)  # a heartbeat every 0.1 s
    await db.execute("""
        CREATE FUNCTION refuse_heartbeat() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'heartbeat refused'; END $$;
        CREATE TRIGGER refuse_heartbeat BEFORE UPDATE OF heartbeat_at ON jobs FOR EACH ROW
        WHEN (OLD.status = 'running') EXECUTE FUNCTION refuse_heartbeat();""")
    assert await asyncio.wait_for(worker.run_once(), 30)
    failed = [r for r in caplog.records if r.levelname == "ERROR" and export_id in r.getMessage()]
    assert failed and "heartbeat refused" in failed[0].getMessage(), caplog.text
    assert failed[0].exc_info is not None


async def test_a_graceful_stop_gives_the_job_back_without_using_an_attempt_but_a_crash_uses_one(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker, db: asyncpg.Connection[Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM sets the worker's stop event (shared.processes.stop_on_signals): three deploys during one long
    export must not fail it, while workers that die mid-job still use up its attempts."""
    running, stalling = asyncio.Event(), [True]

    class LongRun(ExportRun):
        async def run(self) -> tuple[str, str]:
            if stalling[0]:
                running.set()
                await asyncio.Event().wait()  # a long export, still drawing when the worker is told to stop
            return await super().run()

    async def stop_mid_job() -> None:
        running.clear()
        stop = asyncio.Event()
        loop = asyncio.create_task(worker.run(stop))
        await asyncio.wait_for(running.wait(), 30)
        stop.set()
        await asyncio.wait_for(loop, 30)

    monkeypatch.setattr(worker_module, "ExportRun", LongRun)
    key = await make_key()
    group_id, _ = await mint_group(api, key, 3)
    body = {"format": "codes_csv", "group_id": group_id}
    export_id = (await api.post("/v1/exports", headers=bearer(key), json=body)).json()["id"]
    for _ in range(claims.MAX_ATTEMPTS):
        await stop_mid_job()
        assert (await api.get(f"/v1/exports/{export_id}", headers=bearer(key))).json()["status"] == "queued"
    stalling[0] = False
    job = await run_job(api, worker, key, f"/v1/exports/{export_id}")
    assert job["status"] == "succeeded", job["error"]
    file = await api.get(f"/v1/exports/{export_id}/file", headers=bearer(key))
    assert file.status_code == 200 and file.text.count("\r\n") == 4

    # A graceful stop, then three workers that die mid-job (their leases run out): the crashes count.
    stalling[0] = True
    crashed_id = (await api.post("/v1/exports", headers=bearer(key), json=body)).json()["id"]
    await stop_mid_job()
    for _ in range(claims.MAX_ATTEMPTS):
        assert await claims.claim(worker.db, 60) is not None
        await db.execute("UPDATE jobs SET heartbeat_at = now() - interval '1 hour' WHERE id = $1", crashed_id)
    stalling[0] = False
    job = await run_job(api, worker, key, f"/v1/exports/{crashed_id}")
    assert job["status"] == "failed" and "interrupted 3 times" in job["error"]["detail"], job

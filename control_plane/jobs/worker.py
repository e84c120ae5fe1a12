"""`scanroute jobs`: exports and imports, one job at a time per process; run as many processes as needed.

Rendering is CPU work done in a thread, so the event loop keeps the lease alive while a page is drawn.
SIGTERM stops the worker between batches and puts its job back in the queue for the next worker, without
counting an attempt (docs/exports.md, "The job worker").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, cast

import asyncpg
import orjson

from control_plane.jobs import claims
from control_plane.jobs.exporting import ExportRun, expiry
from control_plane.jobs.importing import run_import
from control_plane.render.images import with_image_secret
from control_plane.services.cache import EdgeCache
from control_plane.services.export_files import FileStore
from control_plane.services.exports import export_event_object
from shared.database import create_pool
from shared.keys import RedisKeys
from shared.outbox import record_event
from shared.problems import Problem
from shared.processes import Backoff, pause, stop_on_signals
from shared.redis_client import create_redis
from shared.settings import ControlPlaneSettings, JobSettings
from shared.unavailable import POSTGRES_TRANSIENT, STORE_UNAVAILABLE

log = logging.getLogger(__name__)
CLEANUP_INTERVAL = 60.0  # seconds between sweeps for expired export files


class JobWorker:
    def __init__(self, settings: JobSettings, db: asyncpg.Pool[Any], cache: EdgeCache,
                 control_plane: ControlPlaneSettings) -> None:
        self.settings = settings
        self.cp = control_plane  # with the URL secret loaded
        self.db = db
        self.cache = cache
        self.files = FileStore(db, control_plane.export_dir)
        self.next_cleanup = 0.0
        self.finished = 0

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff()
        while not stop.is_set():
            try:
                await self._cleanup_if_due()
                job = await claims.claim(self.db, self.settings.lease)
            except (*STORE_UNAVAILABLE, *POSTGRES_TRANSIENT) as exc:
                # PostgreSQL is down, restarting or short of connections: wait for it, never exit
                await backoff.wait(stop, log, "job worker paused", exc)
                continue
            backoff.reset()
            if job is None:
                await pause(stop, self.settings.poll_interval)
                continue
            try:
                await self._supervise(job, stop)
            except Exception:  # the database went away mid-job, say: the lease hands the job to a worker later
                log.exception("job %s could not be ended; it returns to the queue after its lease", job["id"])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.poll_interval)

    async def run_once(self) -> bool:
        """Claim and finish one job if any is waiting (tests and benchmarks drive the worker with this)."""
        job = await claims.claim(self.db, self.settings.lease)
        if job is not None:
            await self._supervise(job, asyncio.Event())
        return job is not None

    async def _supervise(self, job: asyncpg.Record, stop: asyncio.Event) -> None:
        work = asyncio.create_task(self._process(job))
        beat = asyncio.create_task(self._heartbeat(job))
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait((work, beat, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (beat, stopping):
                task.cancel()
        _log_heartbeat_error(job, beat)
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, claims.JobLost):
                await work
            if stop.is_set():
                await claims.release_stopping(self.db, job)
                log.info("stopping: job %s is back in the queue", job["id"])
            return
        with contextlib.suppress(claims.JobLost):
            work.result()

    async def _heartbeat(self, job: asyncpg.Record) -> None:
        """Renew the lease every `lease / 4` seconds; return (and so cancel the work) only when the job is lost.

        A renewal that PostgreSQL cannot answer right now (a failover, a dropped connection) is tried again at
        the next beat: a blip must not cancel a long export. Only when no renewal got through for a whole lease,
        so that another worker may have claimed the job, is it given up (docs/exports.md, the job worker).
        """
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(self.settings.lease / 4)
            try:
                held = await claims.renew(self.db, job)
            except (*STORE_UNAVAILABLE, *POSTGRES_TRANSIENT) as exc:
                if time.monotonic() - renewed < self.settings.lease:
                    log.warning("job %s: heartbeat failed (%r); trying again", job["id"], exc)
                    continue
                log.warning("job %s: no heartbeat for the lease (%r); another worker may take it", job["id"], exc)
                return
            if not held:
                log.warning("job %s was taken over by another worker", job["id"])
                return
            renewed = time.monotonic()

    async def _process(self, job: asyncpg.Record) -> None:
        started = time.monotonic()
        try:
            # Not an import's codes to publish; claims handed back by a graceful stop do not count.
            if claims.interrupted(job) >= claims.MAX_ATTEMPTS and job["result"] is None:
                raise Problem(500, f"The job was interrupted {claims.MAX_ATTEMPTS} times; request it again.")
            if job["kind"] == "export":
                await self._export(job)
            else:
                await run_import(self.db, self.cp, self.cache, job, self._finisher(job))
        except (claims.JobLost, asyncio.CancelledError):
            raise
        except Problem as problem:
            await self._fail(job, problem)
        except (*STORE_UNAVAILABLE, *POSTGRES_TRANSIENT) as exc:
            # Not the job's fault (a failover, a dropped connection, a cancelled statement, a deadlock): it gets
            # another attempt, as when a worker dies (docs/exports.md, the job worker): at once if PostgreSQL
            # answers again, else after the lease. MAX_ATTEMPTS bounds the retries.
            log.warning("job %s interrupted (%r); it goes back to the queue", job["id"], exc)
            with contextlib.suppress(*STORE_UNAVAILABLE, *POSTGRES_TRANSIENT):
                await claims.release(self.db, job)
            return
        except Exception:
            log.exception("job %s failed", job["id"])
            await self._fail(job, Problem(500, "The job failed on an internal error; request it again."))
        self.finished += 1
        log.info("job %s (%s) ended after %.1f s", job["id"], job["kind"], time.monotonic() - started)

    async def _export(self, job: asyncpg.Record) -> None:
        sink = await self.files.sink(job["id"], job["attempt"])

        async def report(done: int, total: int | None) -> None:
            await claims.progress(self.db, job, done, total)

        name, media_type = await ExportRun(self.db, self.cp, job, sink, report).run()
        size = await sink.close()
        async with self.db.acquire() as proxy, proxy.transaction():
            if not await self._finish(_connection(proxy), job, "succeeded", None, None, (name, media_type, size)):
                raise claims.JobLost(job["id"])
        await self.files.keep_only(job["id"], job["attempt"])

    def _finisher(self, job: asyncpg.Record) -> Any:
        async def finish(conn: asyncpg.Connection[Any], status: str, result: dict[str, Any],
                         problem: Problem | None) -> bool:
            return await self._finish(conn, job, status, result, problem, None)

        return finish

    async def _fail(self, job: asyncpg.Record, problem: Problem) -> None:
        async with self.db.acquire() as proxy, proxy.transaction():
            ended = await self._finish(_connection(proxy), job, "failed", None, problem, None)
        if ended:  # no attempt's file will ever be served: what dead attempts left goes too
            await self.files.delete(job["id"])
        else:  # taken over: the attempt that holds the job (and may have finished it) keeps its file
            await self.files.delete(job["id"], job["attempt"])

    async def _finish(self, conn: asyncpg.Connection[Any], job: asyncpg.Record, status: str,
                      result: dict[str, Any] | None, problem: Problem | None,
                      file: tuple[str, str, int] | None) -> bool:
        """End the job (if this attempt still holds it) and announce an export's outcome in the same transaction."""
        name, media_type, size = file or (None, None, None)
        error = _problem_document(problem) if problem is not None else None
        row = await conn.fetchrow(claims.FINISH, job["id"], job["attempt"], status, result, error,
                                  expiry(self.cp), name, media_type, size)
        if row is None:
            return False
        # An export's selection, an import's created codes: needed while the job ran, never after.
        await conn.execute("DELETE FROM job_codes WHERE job_id = $1", job["id"])
        if job["kind"] == "export":
            await record_event(conn, job["org_id"], job["livemode"], f"export.{status}",
                               export_event_object(row, self.cp))
        else:
            await conn.execute("DELETE FROM job_inputs WHERE job_id = $1", job["id"])
        return True

    async def _cleanup_if_due(self) -> None:
        if time.monotonic() < self.next_cleanup:
            return
        self.next_cleanup = time.monotonic() + CLEANUP_INTERVAL
        await self.remove_expired()

    async def remove_expired(self) -> int:
        """Delete the files of exports past `expires_at` (kept at least EXPORT_TTL_HOURS ≥ 24 h)."""
        expired = [r["id"] for r in await self.db.fetch(claims.EXPIRED)]
        for job_id in expired:
            await self.files.delete(job_id)
            await self.db.execute("UPDATE jobs SET file_size = NULL WHERE id = $1", job_id)
        return len(expired)


def _log_heartbeat_error(job: asyncpg.Record, beat: asyncio.Task[None]) -> None:
    """A renewal that failed on anything but an outage (a bug, a trigger or constraint refusing the UPDATE)
    ended the heartbeat: the lease cannot be kept, so the work is given up as when the job is lost, and the job
    returns to the queue after its lease (docs/exports.md). The error is retrieved and logged here, with the
    job, rather than left to asyncio's "exception never retrieved"."""
    if beat.done() and not beat.cancelled() and (error := beat.exception()) is not None:
        log.error("job %s: heartbeat failed (%r); the job is given up and returns to the queue after its lease",
                  job["id"], error, exc_info=error)


def _connection(proxy: Any) -> asyncpg.Connection[Any]:
    """A pooled connection as the services take it (the proxy forwards every method)."""
    return cast("asyncpg.Connection[Any]", proxy)


def _problem_document(problem: Problem) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(problem.body())
    return document


async def start_worker(settings: JobSettings, db: asyncpg.Pool[Any], redis: Any) -> JobWorker:
    control_plane = await with_image_secret(settings.control_plane, db)
    keys = RedisKeys(settings.control_plane.stores.redis_namespace)
    return JobWorker(settings, db, EdgeCache(redis, keys), control_plane)


async def _start_when_reachable(settings: JobSettings, db: asyncpg.Pool[Any], redis: Any,
                                stop: asyncio.Event) -> JobWorker | None:
    """The worker, once PostgreSQL answers; None if stopped first. A worker started (or restarted by
    `scanroute up`) during an outage waits instead of exiting."""
    backoff = Backoff()
    while not stop.is_set():
        try:
            return await start_worker(settings, db, redis)
        except STORE_UNAVAILABLE as exc:
            await backoff.wait(stop, log, "job worker waiting for the database", exc)
    return None


async def serve(settings: JobSettings) -> None:
    """Run until SIGTERM/SIGINT; a job in progress goes back to the queue."""
    stop = stop_on_signals()
    # min_size=0: creating the pool connects to nothing, so the worker starts while PostgreSQL is down.
    db = await create_pool(settings.control_plane.stores.database_url, min_size=0, max_size=4)
    redis = create_redis(settings.control_plane.stores.redis_url)
    try:
        worker = await _start_when_reachable(settings, db, redis, stop)
        if worker is None:
            return
        log.info("job worker started")
        await worker.run(stop)
        log.info("job worker stopped after %d jobs", worker.finished)
    finally:
        await db.close()
        await redis.aclose()

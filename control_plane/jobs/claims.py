"""Claiming jobs and writing their state, fenced by the attempt number.

A job is claimed with `FOR UPDATE SKIP LOCKED` (many workers, no double claim) and held by a lease the
worker renews: a job `running` without a heartbeat for the lease is claimed again, by any worker, and
starts over. Every write names the attempt it belongs to, so a worker that lost its job (stalled past the
lease) finds its writes refused and stops, instead of racing the one that took over.
"""

from __future__ import annotations

from typing import Any

import asyncpg

CLAIM = """
UPDATE jobs SET status = 'running', attempt = attempt + 1, heartbeat_at = now(), progress_done = 0
WHERE id = (
    SELECT id FROM jobs
    WHERE status = 'queued' OR (status = 'running' AND heartbeat_at < now() - make_interval(secs => $1))
    ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING *"""
PROGRESS = """
UPDATE jobs SET progress_done = $3, progress_total = coalesce($4, progress_total), heartbeat_at = now()
WHERE id = $1 AND attempt = $2 AND status = 'running'"""
HEARTBEAT = "UPDATE jobs SET heartbeat_at = now() WHERE id = $1 AND attempt = $2 AND status = 'running'"
FINISH = """
UPDATE jobs SET status = $3, result = $4, error = $5, finished_at = now(), expires_at = $6, file_name = $7,
    media_type = $8, file_size = $9,
    progress_done = CASE WHEN $3 = 'succeeded' THEN greatest(progress_done, progress_total) ELSE progress_done END
WHERE id = $1 AND attempt = $2 AND status = 'running'
RETURNING *"""
RELEASE = "UPDATE jobs SET status = 'queued', heartbeat_at = NULL WHERE id = $1 AND attempt = $2 AND status = 'running'"
# A graceful stop hands the claim back uncounted: `attempt - stops` is what MAX_ATTEMPTS bounds.
RELEASE_STOPPING = """
UPDATE jobs SET status = 'queued', heartbeat_at = NULL, stops = stops + 1
WHERE id = $1 AND attempt = $2 AND status = 'running'"""
EXPIRED = "SELECT id FROM jobs WHERE file_size IS NOT NULL AND expires_at < now() ORDER BY expires_at LIMIT 100"
MAX_ATTEMPTS = 3  # claims of one job (each after a worker died or lost PostgreSQL mid-job) before it fails


class JobLost(Exception):
    """Another worker took the job over (this one stalled past its lease)."""


async def claim(db: asyncpg.Pool[Any], lease: float) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(CLAIM, lease)
    return row


async def progress(db: asyncpg.Pool[Any], job: asyncpg.Record, done: int, total: int | None) -> None:
    if await db.execute(PROGRESS, job["id"], job["attempt"], done, total) == "UPDATE 0":
        raise JobLost(job["id"])


async def renew(db: asyncpg.Pool[Any], job: asyncpg.Record) -> bool:
    """Renew the lease; False once another attempt holds the job. An attempt that ended its job itself still
    holds it: there is nothing to renew, and its work goes on to the end."""
    if await db.execute(HEARTBEAT, job["id"], job["attempt"]) != "UPDATE 0":
        return True
    attempt: int | None = await db.fetchval("SELECT attempt FROM jobs WHERE id = $1", job["id"])
    return attempt is not None and attempt == int(job["attempt"])


def interrupted(job: asyncpg.Record) -> int:
    """Claims of the job before this one that ended without ending it, graceful stops left out."""
    return int(job["attempt"]) - 1 - int(job["stops"])


async def release(db: asyncpg.Pool[Any], job: asyncpg.Record) -> None:
    """Back to the queue at once (PostgreSQL failed the attempt), instead of waiting out the lease; the attempt
    counts against MAX_ATTEMPTS."""
    await db.execute(RELEASE, job["id"], job["attempt"])


async def release_stopping(db: asyncpg.Pool[Any], job: asyncpg.Record) -> None:
    """Back to the queue at once because the worker is stopping gracefully: the attempt does not count, so
    deploys and restarts never use up a job's attempts (a crash still does)."""
    await db.execute(RELEASE_STOPPING, job["id"], job["attempt"])

"""Running one import job: parse and check every row, then create all codes in one transaction (or none)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, cast

import asyncpg

from control_plane.jobs.claims import JobLost
from control_plane.services.cache import EdgeCache
from control_plane.services.imports import check_rows, create_codes, parse_csv
from control_plane.services.keys import ApiKey
from control_plane.services.usage import meter_created
from shared.problems import Problem
from shared.settings import ControlPlaneSettings

PUBLISH_SLICE = 500  # codes written through to Redis per call

# Called inside a transaction of the import's: with its (lack of) codes, or after they reached the edges.
Finish = Callable[["asyncpg.Connection[Any]", str, dict[str, Any], Problem | None], Awaitable[bool]]


def _invalid(count: int) -> Problem:
    rows = "row is" if count == 1 else "rows are"
    return Problem(422, f"{count} {rows} not valid; nothing was created (see result.errors).", type="invalid-import")


class _RollBack(Exception):
    """Ends a savepoint whose writes were only a check."""


async def _meter_and_roll_back(conn: asyncpg.Connection[Any], key: ApiKey, count: int) -> None:
    """A dry run runs every check (docs/exports.md), the plan's cap too: it meters the codes as the import would
    (402 over a free plan's cap) in a savepoint, then rolls it back, so nothing is counted."""
    with contextlib.suppress(_RollBack):
        async with conn.transaction():
            await meter_created(conn, key, count)
            raise _RollBack


# The codes commit with the job's `result` while it still reads `running`; the job ends only once every edge
# can answer them (docs/freshness.md): a client polling it must not see `succeeded` and then a 404.
COMMIT_CREATED = """
UPDATE jobs SET result = $3 WHERE id = $1 AND attempt = $2 AND status = 'running' RETURNING id"""
KEEP_CREATED = """
INSERT INTO job_codes (job_id, position, code_id) SELECT $1, n, code_id FROM unnest($2::text[]) WITH ORDINALITY
AS c(code_id, n)"""


async def run_import(db: asyncpg.Pool[Any], settings: ControlPlaneSettings, cache: EdgeCache, job: asyncpg.Record,
                     finish: Finish) -> None:
    if job["result"] is not None:  # an earlier attempt committed the codes and stopped before the edges had them
        await _publish_and_finish(db, cache, job, finish)
        return
    key = ApiKey(f"job:{job['id']}", job["org_id"], job["livemode"], frozenset())
    data: bytes = await db.fetchval("SELECT body FROM job_inputs WHERE job_id = $1", job["id"])
    parsed = await asyncio.to_thread(parse_csv, data)
    rows, errors = parsed.rows, parsed.errors
    await db.execute("UPDATE jobs SET progress_total = $2 WHERE id = $1", job["id"], parsed.records)
    async with db.acquire() as proxy, proxy.transaction():
        conn = cast("asyncpg.Connection[Any]", proxy)
        # Checked in the transaction that creates the codes, so a group or folder deleted meanwhile is either
        # found missing here or deleted after the commit, never in between.
        errors = sorted(errors + await check_rows(conn, key, rows, settings), key=lambda e: (e["row"], e["field"]))
        dry_run = bool(job["request"].get("dry_run"))
        if dry_run and not errors:
            await _meter_and_roll_back(conn, key, len(rows))
        if dry_run or errors:
            problem = None if dry_run else _invalid(len({e["row"] for e in errors}))
            await finish(conn, "failed" if problem else "succeeded", {"created": 0, "errors": errors}, problem)
            return
        created = await create_codes(conn, key, rows, settings) if rows else []
        if await conn.fetchval(COMMIT_CREATED, job["id"], job["attempt"], {"created": len(created), "errors": []}) \
                is None:
            raise JobLost(job["id"])  # taken over meanwhile: roll these codes back
        await conn.execute("DELETE FROM job_inputs WHERE job_id = $1", job["id"])
        await conn.execute(KEEP_CREATED, job["id"], created)
    await _publish_and_finish(db, cache, job, finish)


async def _publish_and_finish(db: asyncpg.Pool[Any], cache: EdgeCache, job: asyncpg.Record, finish: Finish) -> None:
    """Write the committed codes through to the edges, then end the job. A worker stopped or failing in between
    leaves the job `running`; the attempt that takes it over publishes them again (docs/exports.md)."""
    created: list[str] = [r["code_id"] for r in await db.fetch(
        "SELECT code_id FROM job_codes WHERE job_id = $1 ORDER BY position", job["id"])]
    # In slices, so that each write-through fits in the edge lease (a whole 10,000 would time out into a cache
    # repair).
    for start in range(0, len(created), PUBLISH_SLICE):
        await cache.publish_codes(db, created[start:start + PUBLISH_SLICE])
    result = job["result"] if job["result"] is not None else await db.fetchval(
        "SELECT result FROM jobs WHERE id = $1", job["id"])
    async with db.acquire() as proxy, proxy.transaction():
        if not await finish(cast("asyncpg.Connection[Any]", proxy), "succeeded", result, None):
            raise JobLost(job["id"])

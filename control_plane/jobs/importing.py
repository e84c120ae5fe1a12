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

# Called inside the import's own transaction, so the job ends exactly when its codes commit.
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


async def run_import(db: asyncpg.Pool[Any], settings: ControlPlaneSettings, cache: EdgeCache, job: asyncpg.Record,
                     finish: Finish) -> None:
    key = ApiKey(f"job:{job['id']}", job["org_id"], job["livemode"], frozenset())
    data: bytes = await db.fetchval("SELECT body FROM job_inputs WHERE job_id = $1", job["id"])
    parsed = await asyncio.to_thread(parse_csv, data)
    rows, errors = parsed.rows, parsed.errors
    await db.execute("UPDATE jobs SET progress_total = $2 WHERE id = $1", job["id"], parsed.records)
    created: list[str] = []
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
        else:
            created = await create_codes(conn, key, rows, settings) if rows else []
            if not await finish(conn, "succeeded", {"created": len(created), "errors": []}, None):
                raise JobLost(job["id"])  # taken over meanwhile: roll these codes back
    # Like every create: the edges learn of the new codes after the commit. In slices, so that each
    # write-through fits in the edge lease (a whole 10,000 would time out into a cache repair).
    for start in range(0, len(created), PUBLISH_SLICE):
        await cache.publish_codes(db, created[start:start + PUBLISH_SLICE])

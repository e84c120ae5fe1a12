"""`scanroute export …` and `scanroute import FILE`: the API's jobs for scripts, run in this process.

The job is queued exactly as `POST /v1/exports` / `POST /v1/imports` queue it (same checks, same events),
then this process works the queue like `scanroute jobs` until that job has ended.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import ValidationError

from control_plane.jobs.worker import JobWorker, start_worker
from control_plane.render.images import RenderCache
from control_plane.services.export_files import FileStore
from control_plane.services.exports import ExportCreate, create_export, export_object
from control_plane.services.imports import MAX_BYTES, create_import, import_object
from control_plane.services.keys import ApiKey
from shared.database import create_pool
from shared.problems import Problem, from_validation_error
from shared.redis_client import create_redis
from shared.settings import JobSettings

WAIT_LIMIT = 900.0  # seconds a command waits for its job


def _export_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"format": args.format}
    for name in ("group_id", "folder_id", "tag", "image_format", "size_mm", "dpi", "since", "until"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    if args.code_ids:
        body["code_ids"] = [c.strip() for c in args.code_ids.split(",") if c.strip()]
    sheet = {name: getattr(args, name) for name in ("template", "paper", "columns", "rows", "qr_size_mm", "label")
             if getattr(args, name) is not None}
    if args.crop_marks:
        sheet["crop_marks"] = True
    if sheet:
        body["sheet"] = sheet
    return body


async def _key(conn: asyncpg.Connection[Any], org: str, test: bool) -> ApiKey:
    org_id = await conn.fetchval("SELECT id FROM organisations WHERE name = $1", org)
    if org_id is None:
        raise Problem(404, f"No organisation named {org!r}.")
    return ApiKey("cli", org_id, not test, frozenset())


async def _until_done(worker: JobWorker, db: asyncpg.Pool[Any], job_id: str) -> asyncpg.Record:
    deadline = time.monotonic() + WAIT_LIMIT
    while time.monotonic() < deadline:
        row: asyncpg.Record | None = await db.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
        assert row is not None, "jobs are never deleted"
        if row["status"] in ("succeeded", "failed"):
            return row
        if not await worker.run_once():
            await asyncio.sleep(0.2)  # another worker holds it
    raise Problem(503, f"Job {job_id} did not finish within {WAIT_LIMIT:.0f} s.")


async def _run(settings: JobSettings, job: Any, output: Path | None) -> tuple[Mapping[str, object], bool]:
    db = await create_pool(settings.control_plane.stores.database_url, min_size=1, max_size=4)
    redis = create_redis(settings.control_plane.stores.redis_url)
    try:
        worker = await start_worker(settings, db, redis)
        async with db.acquire() as conn, conn.transaction():
            obj = await job(conn, worker)
        row = await _until_done(worker, db, obj["id"])
        if row["kind"] == "import":
            return import_object(row), row["status"] == "succeeded"
        if row["status"] == "succeeded" and output is not None:
            with output.open("wb") as handle:
                async for chunk in FileStore(db, settings.control_plane.export_dir).read(row["id"], row["attempt"]):
                    handle.write(chunk)
        return export_object(row, worker.cp), row["status"] == "succeeded"
    finally:
        await db.close()
        await redis.aclose()


def _report(obj: Mapping[str, object], ok: bool) -> int:
    print(json.dumps(obj, indent=2))
    return 0 if ok else 1


def cmd_export(args: argparse.Namespace) -> int:
    try:
        body = ExportCreate.model_validate(_export_body(args))
    except ValidationError as exc:
        print(from_validation_error(exc).body().decode(), file=sys.stderr)
        return 2
    settings = JobSettings.from_env()

    async def queue(conn: asyncpg.Connection[Any], worker: JobWorker) -> Mapping[str, object]:
        render = RenderCache(worker.db, worker.cache.redis, worker.cache.keys)
        return await create_export(conn, await _key(conn, args.org, args.test), body, worker.cp, render)

    return _guarded(lambda: _run(settings, queue, args.output))


def cmd_import(args: argparse.Namespace) -> int:
    data = args.file.read_bytes()
    if len(data) > MAX_BYTES:
        print(f"error: an import file is at most {MAX_BYTES} bytes", file=sys.stderr)
        return 2
    settings = JobSettings.from_env()

    async def queue(conn: asyncpg.Connection[Any], worker: JobWorker) -> Mapping[str, object]:
        return await create_import(conn, await _key(conn, args.org, args.test), data, args.dry_run)

    return _guarded(lambda: _run(settings, queue, None))


def _guarded(run: Any) -> int:
    try:
        obj, ok = asyncio.run(run())
    except Problem as problem:
        print(problem.body().decode(), file=sys.stderr)
        return 1
    return _report(obj, ok)


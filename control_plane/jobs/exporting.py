"""Running one export job: codes in batches → a writer in a thread → the file store, with progress."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from control_plane.jobs.formats import (
    CODES_COLUMNS,
    SCANS_COLUMNS,
    Buffer,
    UniqueNames,
    ZipEntry,
    ZipWriter,
    csv_lines,
)
from control_plane.render.design import Design
from control_plane.render.images import payload_for
from control_plane.render.logo import load_logo
from control_plane.render.sheets import PrintItem, SheetWriter
from control_plane.services.export_files import FileSink
from control_plane.services.exports import DEFAULT_SCAN_RANGE, ExportCreate, sheet_for, unreadable_pngs
from shared.settings import ControlPlaneSettings
from shared.times import timestamp

BATCH = 200  # codes per round trip and per thread hand-off
SCAN_BATCH = 5_000  # scans per cursor fetch
CODE_BATCH = """
SELECT j.position, c.id, c.kind, c.type, c.content, c.domain, c.slug, c.design, c.name, c.group_id, c.folder_id,
       c.tags, c.status, c.destination_type, c.destination_url, c.scan_count, c.created_at, c.deleted_at
FROM job_codes j JOIN qr_codes c ON c.id = j.code_id
WHERE j.job_id = $1 AND j.position > $2 ORDER BY j.position LIMIT $3"""
Progress = Callable[[int, int | None], Awaitable[None]]  # (done, new total or None)


class Rendering:
    """Designs parsed and logos loaded once per distinct value: codes minted together share them."""

    def __init__(self, db: asyncpg.Pool[Any], settings: ControlPlaneSettings) -> None:
        self.db = db
        self.settings = settings
        self.designs: dict[bytes, Design] = {}
        self.logos: dict[str, bytes | None] = {}

    async def item(self, row: asyncpg.Record, label: str) -> PrintItem:
        raw = orjson.dumps(row["design"] or {}, option=orjson.OPT_SORT_KEYS)
        design = self.designs.get(raw)
        if design is None:
            design = self.designs[raw] = Design.model_validate(row["design"] or {})
        logo = None
        if design.logo is not None and design.logo.sha256:
            digest = design.logo.sha256
            if digest not in self.logos:
                self.logos[digest] = await load_logo(self.db, digest)
            logo = self.logos[digest]
        return PrintItem(payload_for(row, self.settings), design, label, logo)


def short_url(row: asyncpg.Record, settings: ControlPlaneSettings) -> str | None:
    return f"{settings.public_scheme}://{row['domain']}/{row['slug']}" if row["slug"] else None


def label_for(row: asyncpg.Record, kind: str, settings: ControlPlaneSettings) -> str:
    if kind == "slug":
        return str(row["slug"] or row["name"])
    if kind == "short_url":
        return short_url(row, settings) or str(row["name"])
    return "" if kind == "none" else str(row["name"])


async def code_batches(db: asyncpg.Pool[Any], job_id: str, *,
                       deleted: bool = False) -> AsyncIterator[tuple[int, list[asyncpg.Record]]]:
    """The job's codes in print order, a batch at a time: (codes consumed, codes still there to print, and
    with `deleted` those deleted since the request too)."""
    position = 0
    while True:
        rows = await db.fetch(CODE_BATCH, job_id, position, BATCH)
        if not rows:
            return
        position = rows[-1]["position"]
        yield len(rows), [r for r in rows if deleted or r["deleted_at"] is None]


class ExportRun:
    def __init__(self, db: asyncpg.Pool[Any], settings: ControlPlaneSettings, job: asyncpg.Record, sink: FileSink,
                 progress: Progress) -> None:
        self.db = db
        self.settings = settings
        self.job = job
        self.sink = sink
        self.progress = progress
        fields = {k: v for k, v in job["request"].items() if k != "all_codes"}
        self.request = ExportCreate.model_validate(fields)
        self.done = 0

    async def run(self) -> tuple[str, str]:
        """Write the file; returns (file name, media type)."""
        kind = self.request.format
        if kind == "pdf_sheet":
            await self._sheet()
            return f"{self.job['id']}.pdf", "application/pdf"
        if kind == "zip":
            await self._zip()
            return f"{self.job['id']}.zip", "application/zip"
        if kind == "codes_csv":
            await self._codes_csv()
        else:
            await self._scans_csv()
        return f"{self.job['id']}.csv", "text/csv; charset=utf-8"

    async def _drain(self, buffer: Buffer, advanced: int) -> None:
        await self.sink.write(buffer.take())
        self.done += advanced
        await self.progress(self.done, None)

    async def _sheet(self) -> None:
        buffer, rendering = Buffer(), Rendering(self.db, self.settings)
        sheet = sheet_for(self.request)
        writer = SheetWriter(buffer, sheet)  # type: ignore[arg-type]  # write is all it needs
        async for consumed, rows in code_batches(self.db, self.job["id"]):
            items = [await rendering.item(r, label_for(r, sheet.label, self.settings)) for r in rows]
            await asyncio.to_thread(_add_all, writer, items)
            await self._drain(buffer, consumed)
        await asyncio.to_thread(writer.close)
        await self._drain(buffer, 0)

    async def _zip(self) -> None:
        assert self.request.image_format is not None
        buffer, rendering = Buffer(), Rendering(self.db, self.settings)
        writer = ZipWriter(buffer, self.request.image_format, self.request.size_mm, self.request.dpi)
        names = UniqueNames(self.request.image_format)
        # The manifest fixes which codes the zip holds, under which file names (a few bytes a code, as the zip
        # directory): a code deleted while the images are drawn keeps its image, so the two always agree.
        files: dict[str, str] = {}
        async for _, rows in code_batches(self.db, self.job["id"]):
            files.update((r["id"], names.name(r["id"], r["slug"])) for r in rows)
            writer.manifest_rows([
                (r["id"], r["slug"], short_url(r, self.settings), r["name"], r["group_id"], r["folder_id"],
                 "|".join(r["tags"]), files[r["id"]]) for r in rows])
            await self.sink.write(buffer.take())
        async for consumed, rows in code_batches(self.db, self.job["id"], deleted=True):
            listed = [r for r in rows if r["id"] in files]
            entries = [ZipEntry(await rendering.item(r, r["name"]), files[r["id"]], r["id"]) for r in listed]
            await asyncio.to_thread(writer.add, entries)
            await self._drain(buffer, consumed)
        if writer.unreadable:  # never a zip with an image that does not scan: the job fails, its file goes
            raise unreadable_pngs(writer.unreadable, self.request.size_mm, self.request.dpi)
        await asyncio.to_thread(writer.close)
        await self._drain(buffer, 0)

    async def _codes_csv(self) -> None:
        await self.sink.write(csv_lines([CODES_COLUMNS]))
        async for consumed, rows in code_batches(self.db, self.job["id"]):
            await self.sink.write(csv_lines(
                (r["id"], r["kind"], r["name"], r["slug"], short_url(r, self.settings), r["destination_type"],
                 r["destination_url"], r["group_id"], r["folder_id"], "|".join(r["tags"]), r["status"],
                 r["scan_count"], timestamp(r["created_at"])) for r in rows))
            self.done += consumed
            await self.progress(self.done, None)

    async def _scans_csv(self) -> None:
        until = self.request.until or self.job["created_at"]
        since = self.request.since or until - DEFAULT_SCAN_RANGE
        job_id, org, livemode = self.job["id"], self.job["org_id"], self.job["livemode"]
        selected, chosen = _scan_selection(self.job["request"], job_id)
        where = f"org_id = $1 AND livemode = $2 AND scanned_at >= $3 AND scanned_at < $4{selected}"
        args = (org, livemode, since, until, *chosen)
        async with self.db.acquire() as conn:
            total = await conn.fetchval(f"SELECT count(*) FROM scans WHERE {where}", *args)
            await self.progress(0, total)
            await self.sink.write(csv_lines([SCANS_COLUMNS]))
            async with conn.transaction(readonly=True):
                cursor = await conn.cursor(
                    f"SELECT {', '.join(SCANS_COLUMNS)} FROM scans WHERE {where} ORDER BY scanned_at, scan_id", *args)
                while rows := await cursor.fetch(SCAN_BATCH):
                    await self.sink.write(csv_lines(_scan_row(r) for r in rows))
                    self.done += len(rows)
                    await self.progress(self.done, None)


def _scan_selection(request: dict[str, Any], job_id: str) -> tuple[str, tuple[str, ...]]:
    """The condition on `scans` (and its argument, $5) for the codes a `scans_csv` selects. A group's are the
    scans recorded with the group, as its analytics count them: made while the code belonged to it."""
    if request.get("group_id") is not None:
        return " AND group_id = $5", (request["group_id"],)
    if request.get("all_codes"):
        return "", ()
    return " AND code_id IN (SELECT code_id FROM job_codes WHERE job_id = $5)", (job_id,)


def _scan_row(row: asyncpg.Record) -> tuple[Any, ...]:
    values = list(row.values())
    values[1] = timestamp(row["scanned_at"])
    values[6] = "true" if row["is_bot"] else "false"
    return tuple(values)


def _add_all(writer: SheetWriter, items: list[PrintItem]) -> None:
    for item in items:
        writer.add(item)


def expiry(settings: ControlPlaneSettings) -> datetime:
    return datetime.now(UTC) + timedelta(hours=settings.export_ttl_hours)

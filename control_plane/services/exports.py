"""Export jobs (docs/exports.md): what is asked for, which codes, the print check, and the `export` object.

Everything that can be refused is refused here, when the job is requested, before any work starts; the
job worker (`control_plane.jobs`) then only renders.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, cast

import asyncpg
import orjson
from pydantic import ConfigDict, Field, model_validator
from typing_extensions import TypedDict

from control_plane.render.design import Design, parse_design
from control_plane.render.images import RenderCache, effective_design, image_key, payload_for, url_secret
from control_plane.render.matrix import PayloadTooLarge
from control_plane.render.scannability import MAX_CHECK_SIZE, MIN_MODULE_PIXELS
from control_plane.render.sheets import (
    MIN_MODULE_MM,
    TEMPLATES,
    Sheet,
    grid_sheet,
    module_count,
    smallest_size,
    template_sheet,
)
from control_plane.services.context import Queryable, ServiceContext
from control_plane.services.export_files import FileStore
from control_plane.services.keys import ApiKey
from control_plane.services.listing import Listing, PageQuery, owned_page
from control_plane.services.scan_reports import EARLIEST, LATEST
from control_plane.services.schemas import Body, Reference, Tag
from shared.ids import new_id
from shared.problems import Problem, field_error, fields_error, not_found
from shared.rules import Moment
from shared.settings import ControlPlaneSettings
from shared.times import timestamp

MAX_CODES = 10_000
DEFAULT_SCAN_RANGE = timedelta(days=30)  # scans_csv without `since`: the 30 days before `until`
Format = Literal["pdf_sheet", "zip", "codes_csv", "scans_csv"]
JobStatus = Literal["queued", "running", "succeeded", "failed"]
ALPHANUMERIC = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")  # QR alphanumeric mode
DIGITS = re.compile(r"(\d+)")
SELECTION_FIELDS = ("group_id", "code_ids", "folder_id", "tag")
# A PNG's side in pixels. It is drawn on an RGB canvas (Pillow keeps 4 bytes a pixel: 256 MB at 8000) and one
# 1-byte mask at a time (64 MB), gradients scaled up in bands (docs/rendering.md): 8000 costs the job worker
# about PNG_BUDGET_MB while it draws, the schema's 500 mm at 1200 dpi would be gigabytes; 30 mm at 1200 dpi is
# 1417. SVG and PDF are vectors: no cap.
MAX_IMAGE_PIXELS = 8000
PNG_BUDGET_MB = 340  # on top of the worker's own memory; tests/control_plane/render/test_raster_memory.py
# What the export and import objects show of a job. A page of jobs reads no more: the request kept with a
# job holds up to MAX_CODES `code_ids` (~280 KB of JSON), which a page of 100 would decode for nothing.
LISTED_JOB_COLUMNS = (
    "id, kind, livemode, status, progress_done, progress_total, error, result, created_at, finished_at,"
    " expires_at, file_name, file_size,"
    " jsonb_strip_nulls(jsonb_build_object('format', request->'format', 'dry_run', request->'dry_run')) AS request")


def _given(*names: str) -> dict[str, Any]:
    """JSON Schema: each of `names` is present and not null."""
    return {"required": list(names), "properties": {name: {"not": {"type": "null"}} for name in names}}


def _unset(*names: str) -> dict[str, Any]:
    """JSON Schema: each of `names` is absent or null."""
    return {"properties": {name: {"type": "null"} for name in names}}


def _when(condition: dict[str, Any], then: dict[str, Any]) -> dict[str, Any]:
    return {"if": condition, "then": then}


class SheetOptions(Body):
    # The rules between fields, in the schema as `_consistent` below (and sheets.template_sheet) make them.
    model_config = ConfigDict(json_schema_extra={"allOf": [
        _when({"required": ["template"], "properties": {"template": {"const": "grid"}}},
              _given("columns", "rows", "qr_size_mm")),
        # An absent template is avery-l7160, an A4 sheet.
        _when({"properties": {"template": {"enum": ["avery-l7160", "avery-l7163"]}}},
              {"properties": {"paper": {"enum": ["a4", None]}}}),
        _when({"required": ["template"], "properties": {"template": {"const": "avery-5160"}}},
              {"properties": {"paper": {"enum": ["letter", None]}}}),
    ]})

    paper: Literal["a4", "letter"] | None = None
    template: Literal["avery-l7160", "avery-l7163", "avery-5160", "grid"] = "avery-l7160"
    columns: Annotated[int, Field(ge=1, le=20)] | None = None
    rows: Annotated[int, Field(ge=1, le=30)] | None = None
    qr_size_mm: Annotated[float, Field(ge=1, le=280)] | None = None
    label: Literal["name", "slug", "short_url", "none"] = "name"
    crop_marks: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> SheetOptions:
        # Each 422 names the fields it is about (docs/api.md, "Errors"), under `sheet.` in an export's body: the
        # grid fields missing, the template and the paper it does not come on, qr_size_mm too large for its grid.
        if self.template == "grid":
            missing = [name for name in ("columns", "rows", "qr_size_mm") if getattr(self, name) is None]
            if missing:
                raise fields_error("a grid needs columns, rows and qr_size_mm", *missing)
        try:
            self.layout()
        except ValueError as exc:
            named = ("qr_size_mm",) if self.template == "grid" else ("template", "paper")
            raise fields_error(str(exc), *named) from None
        return self

    def layout(self) -> Sheet:
        """The sheet these options lay out; ValueError when it cannot exist (the validator refuses those)."""
        if self.template != "grid":
            return template_sheet(self.template, self.paper, self.label, self.crop_marks)
        if self.columns is None or self.rows is None or self.qr_size_mm is None:
            raise ValueError("a grid needs columns, rows and qr_size_mm")
        return grid_sheet(self.paper or "a4", self.columns, self.rows, self.qr_size_mm, self.label, self.crop_marks)


class ExportCreate(Body):
    # The selection and format rules of `_consistent`, in the schema: one selection at most (folder_id and
    # tag combine), one required for pdf_sheet and zip, image_format for zip, sheet for pdf_sheet only.
    model_config = ConfigDict(json_schema_extra={"allOf": [
        {"anyOf": [
            {**_given("group_id"), **_unset("code_ids", "folder_id", "tag")},
            {**_given("code_ids"), **_unset("group_id", "folder_id", "tag")},
            {**_unset("group_id", "code_ids"), "anyOf": [_given("folder_id"), _given("tag")]},
            {"properties": {**_unset("group_id", "code_ids", "folder_id", "tag")["properties"],
                            "format": {"enum": ["codes_csv", "scans_csv"]}}},
        ]},
        _when({"properties": {"format": {"const": "zip"}}}, _given("image_format")),
        _when({"properties": {"format": {"not": {"const": "pdf_sheet"}}}}, _unset("sheet")),
    ]})

    format: Format
    group_id: Reference | None = None
    code_ids: Annotated[list[Reference], Field(min_length=1, max_length=MAX_CODES)] | None = None
    folder_id: Reference | None = None
    tag: Tag | None = None
    sheet: SheetOptions | None = None
    image_format: Literal["svg", "png", "pdf"] | None = None
    size_mm: Annotated[float, Field(ge=5, le=500, description=(
        f"zip: the printed side of each image; a png is at most {MAX_IMAGE_PIXELS} pixels a side"
        f" (size_mm / 25.4 × dpi), a 422 on size_mm beyond"))] = 30.0
    dpi: Annotated[int, Field(ge=72, le=1200)] = 300  # zip, png: pixels per inch
    since: Moment | None = None  # scans_csv
    until: Moment | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ExportCreate:
        # Each 422 names the fields it is about (docs/api.md, "Errors"): those given, or those to give.
        given = [name for name in SELECTION_FIELDS if getattr(self, name) is not None]
        chosen: list[str] = [name for name in ("group_id", "code_ids") if name in given]
        if self.folder_id is not None or self.tag is not None:
            chosen.append("folder_id/tag")
        if len(chosen) > 1:
            raise fields_error(f"choose one selection: {' or '.join(chosen)}", *given)
        if not chosen and self.format in ("pdf_sheet", "zip"):
            raise fields_error("select codes with group_id, code_ids, folder_id or tag", *SELECTION_FIELDS)
        if self.format == "zip" and self.image_format is None:
            raise fields_error("a zip export needs image_format: svg, png or pdf", "image_format")
        return self


def image_pixels(size_mm: float, dpi: int) -> int:
    return round(size_mm / 25.4 * dpi)


def check_image_size(image_format: str | None, size_mm: float, dpi: int) -> None:
    """422 on `size_mm` when a PNG would be over MAX_IMAGE_PIXELS a side."""
    if image_format == "png" and image_pixels(size_mm, dpi) > MAX_IMAGE_PIXELS:
        largest = math.floor(MAX_IMAGE_PIXELS * 25.4 / dpi * 10) / 10  # rounded down: the size named passes
        raise field_error("size_mm", f"a png is at most {MAX_IMAGE_PIXELS} pixels a side: at {dpi} dpi,"
                                     f" at most {largest:.1f} mm (or lower the dpi)")


def sheet_for(body: ExportCreate) -> Sheet:
    """The layout a `pdf_sheet` export asks for (one that cannot exist was refused by `SheetOptions`)."""
    return (body.sheet or SheetOptions()).layout()


def _selection(key: ApiKey, body: ExportCreate) -> tuple[str, list[Any]]:
    where, args = ["c.org_id = $1", "c.livemode = $2", "c.deleted_at IS NULL"], [key.org_id, key.livemode]

    def add(condition: str, value: Any) -> None:
        args.append(value)
        where.append(condition.replace("?", f"${len(args)}"))

    if body.group_id is not None:
        add("c.group_id = ?", body.group_id)
    if body.code_ids is not None:
        add("c.id = ANY(?::text[])", body.code_ids)
    if body.folder_id is not None:
        add("c.folder_id = ?", body.folder_id)
    if body.tag is not None:
        add("? = ANY(c.tags)", body.tag)
    return " AND ".join(where), args


async def _check_owned(conn: asyncpg.Connection[Any], key: ApiKey, table: str, object_id: str | None,
                       name: str) -> None:
    """404 unless `object_id` (when given) is a row of `table` in the caller's org and mode."""
    if object_id is not None and not await conn.fetchval(
            f"SELECT 1 FROM {table} WHERE id = $1 AND org_id = $2 AND livemode = $3",
            object_id, key.org_id, key.livemode):
        raise not_found(name)


async def select_codes(conn: asyncpg.Connection[Any], key: ApiKey, body: ExportCreate) -> list[asyncpg.Record]:
    await _check_owned(conn, key, "qr_groups", body.group_id, "QR group")
    await _check_owned(conn, key, "folders", body.folder_id, "folder")
    clause, args = _selection(key, body)
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT c.id, c.kind, c.type, c.content, c.domain, c.slug, c.design, c.name, c.created_at"
        f" FROM qr_codes c WHERE {clause} LIMIT {MAX_CODES + 1}", *args)
    if body.code_ids is not None and len(rows) < len(set(body.code_ids)):
        found = {r["id"] for r in rows}
        missing = [code_id for code_id in body.code_ids if code_id not in found]
        raise field_error("code_ids", f"no such QR codes: {', '.join(missing[:5])}")
    if len(rows) > MAX_CODES:
        raise field_error("selection", f"an export holds at most {MAX_CODES} codes; narrow it with a tag or folder")
    if not rows and body.format in ("pdf_sheet", "zip"):
        raise field_error("selection", "selects no code: there is nothing to print")
    return sorted(rows, key=print_order)


def print_order(row: asyncpg.Record) -> tuple[Any, ...]:
    """Creation order; codes created together (a mint, an import: one `created_at`) in the natural order of
    their names, "Table 2" before "Table 10" and "Bar 9" before "Zoo" (docs/exports.md, "Order")."""
    name = row["name"] or ""
    # re.split alternates text and digit runs, starting with text: equal places compare str with str, int with int.
    runs = tuple(int(run) if i % 2 else run.casefold() for i, run in enumerate(DIGITS.split(name)))
    return row["created_at"], runs, name, row["id"]


def _bounded(field: str, value: datetime) -> datetime:
    if not EARLIEST <= value <= LATEST:
        raise field_error(field, "must be between 1970-01-01 and 9999-01-01")
    return value


def scan_range(body: ExportCreate) -> tuple[datetime, datetime]:
    """The `[since, until)` of a `scans_csv`, defaults resolved at the request: 422 on the field at fault."""
    until = _bounded("until", body.until or datetime.now(UTC))
    since = _bounded("since", body.since or max(until - DEFAULT_SCAN_RANGE, EARLIEST))
    if since >= until:
        given = "" if body.until is not None else ", which is the time of the request unless given"
        raise field_error("since", f"must be before until{given}")
    return since, until


def _printed_size(body: ExportCreate) -> tuple[float, str]:
    """The side each code prints at (mm) and the request field that decides it."""
    if body.format == "pdf_sheet":
        grid = (body.sheet or SheetOptions()).template == "grid"
        return sheet_for(body).qr_size, "sheet.qr_size_mm" if grid else "sheet.template"
    return body.size_mm, "size_mm"


def _symbol_class(payload: str) -> tuple[str, int]:
    """What, with the error correction and the margin, decides a symbol's size: its encoding mode and length."""
    mode = "n" if payload.isascii() and payload.isdigit() else "a" if set(payload) <= ALPHANUMERIC else "b"
    return mode, len(payload.encode())


def _largest_symbol(rows: list[asyncpg.Record], settings: ControlPlaneSettings) -> int:
    """Most modules across any selected code. The symbol size depends only on the encoding mode, the
    payload's length, the error correction and the margin, so one symbol is built per such class."""
    classes: dict[tuple[str, int, str, int], tuple[str, Design]] = {}
    designs: dict[str, Design] = {}
    for row in rows:
        payload = payload_for(row, settings)
        raw = row["design"] or {}
        design_key = f"{raw.get('error_correction')}|{raw.get('margin')}|{bool(raw.get('logo'))}"
        design = designs.get(design_key) or designs.setdefault(design_key, parse_design(_sizing_fields(raw)))
        key = (*_symbol_class(payload), design.effective_error_correction, design.margin)
        classes.setdefault(key, (payload, design))
    try:
        return max((module_count(payload, design) for payload, design in classes.values()), default=0)
    except PayloadTooLarge as exc:
        raise field_error("selection", str(exc)) from None


def _sizing_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """The design fields that decide how many modules a symbol has (a logo forces error correction Q)."""
    fields = {k: raw[k] for k in ("error_correction", "margin") if raw.get(k) is not None}
    if raw.get("logo"):
        fields["logo"] = {"url": "https://logo.invalid/x.png"}
    return fields


def print_check(rows: list[asyncpg.Record], body: ExportCreate, settings: ControlPlaneSettings) -> None:
    """422 `too-small-to-print` when any module would print under 0.4 mm, naming the smallest size that passes;
    for a zip of PNGs, 422 `unscannable-design` when a module would be under MIN_MODULE_PIXELS."""
    if body.format not in ("pdf_sheet", "zip") or not rows:
        return
    modules = _largest_symbol(rows, settings)
    _check_printed_size(body, modules)
    if body.format == "zip" and body.image_format == "png":
        check_image_pixels(body.size_mm, body.dpi, modules)


def check_image_pixels(size_mm: float, dpi: int, modules: int) -> None:
    """The floor every image we serve meets (docs/rendering.md): at a low dpi a PNG passes the 0.4 mm print
    check with about 1 px a module, which no phone reads."""
    pixels, needed = image_pixels(size_mm, dpi), MIN_MODULE_PIXELS * modules
    if pixels >= needed:
        return
    smallest_mm = math.ceil(needed * 25.4 / dpi * 10 - 1e-9) / 10
    smallest_dpi = math.ceil(needed * 25.4 / size_mm - 1e-9)
    raise Problem(422, f"A {size_mm:g} mm PNG at {dpi} dpi is {pixels} pixels a side: {pixels / modules:.1f} px a "
                  f"module, under the {MIN_MODULE_PIXELS} px that scan ({modules} modules across); it needs "
                  f"{needed} pixels.", type="unscannable-design", title="The image would not scan", errors=[
                      {"field": "size_mm", "message": f"at {dpi} dpi, at least {smallest_mm:.1f} mm"},
                      {"field": "dpi", "message": f"at {size_mm:g} mm, at least {smallest_dpi}"}])


def _readable_mm(readable: int, dpi: int) -> float:
    """The size_mm, at `dpi`, of a PNG `readable` px a side (off by under 0.3 px at 1200 dpi)."""
    return round(readable * 25.4 / dpi, 2)


async def check_pngs_read(rows: list[asyncpg.Record], body: ExportCreate, settings: ControlPlaneSettings,
                          render: RenderCache) -> None:
    """A quick check of a zip's PNGs on the request (docs/exports.md, "The print check"): one code of each
    design and symbol size is decoded at the PNG's size, with the verdict a download of that image at that size
    gets, cached in Redis; one that does not read is a 422 `unscannable-design` on `size_mm` naming a size that
    reads. It proves those codes only: the data modules differ with the payload, so another code of the same
    design and size may still not read — the export job decodes every PNG it renders (`unreadable_pngs`). Over
    MAX_CHECK_SIZE px (5 px a module and more) they are not decoded, as a design saved that large is not
    decoded at its size (docs/rendering.md)."""
    if body.format != "zip" or body.image_format != "png":
        return
    pixels = image_pixels(body.size_mm, body.dpi)
    if pixels > MAX_CHECK_SIZE:
        return
    proven: set[tuple[bytes, str, int]] = set()
    for row in rows:
        payload, design = payload_for(row, settings), effective_design(row["design"])
        kind = (orjson.dumps(design, option=orjson.OPT_SORT_KEYS), *_symbol_class(payload))
        if kind in proven:
            continue
        readable = await render.readable(image_key(settings, payload, design), payload, design, pixels)
        if readable != pixels:
            size_mm = _readable_mm(readable, body.dpi)
            raise Problem(422, f"A {body.size_mm:g} mm PNG at {body.dpi} dpi is {pixels} pixels a side, and at that"
                          f" size the image of {row['id']} does not decode: its shapes fall badly on the pixel grid."
                          f" At {readable} px ({size_mm:g} mm) it reads.", type="unscannable-design",
                          title="The image would not scan", errors=[
                              {"field": "size_mm", "message": f"at {body.dpi} dpi, {size_mm:g} mm reads"}])
        proven.add(kind)


MAX_NAMED = 20  # unreadable codes named in an export job's error; the detail counts them all


def unreadable_pngs(unreadable: list[tuple[str, int]], size_mm: float, dpi: int) -> Problem:
    """The error of an export job whose zip PNGs did not all decode (docs/exports.md, "The print check"):
    `unreadable` holds (code id, a size in px that reads for it), in the zip's order."""
    pixels = image_pixels(size_mm, dpi)
    named = [f"{code_id} reads at {readable} px ({_readable_mm(readable, dpi):g} mm)"
             for code_id, readable in unreadable[:MAX_NAMED]]
    more = f", and {len(unreadable) - MAX_NAMED} more" if len(unreadable) > MAX_NAMED else ""
    return Problem(422, f"{len(unreadable)} of the zip's PNGs do not decode at {pixels} px ({size_mm:g} mm at {dpi}"
                   f" dpi): their shapes fall badly on the pixel grid at that size. {'; '.join(named)}{more}. No file"
                   f" was kept; request the export again at a size that reads.", type="unscannable-design",
                   title="The image would not scan", errors=[
                       {"field": "size_mm", "message": f"{code_id}: at {dpi} dpi, {_readable_mm(readable, dpi):g} mm "
                                                       "reads"} for code_id, readable in unreadable[:MAX_NAMED]])


def _check_printed_size(body: ExportCreate, modules: int) -> None:
    size, field = _printed_size(body)
    module_mm = size / modules
    if module_mm >= MIN_MODULE_MM:
        return
    needed = smallest_size(modules)
    if field == "sheet.template":
        label = sheet_for(body).label
        fits = [name for name in TEMPLATES if template_sheet(name, None, label, False).qr_size >= needed]
        hint = (f"use {' or '.join(fits)}, or " if fits else "use ") + f"a grid with qr_size_mm ≥ {needed}"
        message = f"codes print at {size:.1f} mm on this template; they need at least {needed} mm: {hint}"
    else:
        message = f"must be at least {needed} mm"
    raise Problem(422, f"Modules would print at {module_mm:.2f} mm, under the {MIN_MODULE_MM} mm that scans reliably; "
                  f"the smallest size that prints these codes is {needed} mm ({modules} modules across).",
                  type="too-small-to-print", title="Too small to print", errors=[{"field": field, "message": message}])


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """A request that passed every check but the decoding of a zip's PNGs: what `queue_export` inserts."""
    body: ExportCreate
    rows: list[asyncpg.Record]
    all_codes: bool


async def plan_export(conn: asyncpg.Connection[Any], key: ApiKey, body: ExportCreate,
                      settings: ControlPlaneSettings) -> ExportPlan:
    """Validate, select the codes and run the print check: reads only, so no transaction is needed."""
    if body.format != "pdf_sheet" and body.sheet is not None:
        raise field_error("sheet", "only pdf_sheet exports are laid out on sheets")
    if body.format == "zip":
        check_image_size(body.image_format, body.size_mm, body.dpi)
    if body.format == "scans_csv":
        since, until = scan_range(body)
        body = body.model_copy(update={"since": since, "until": until})  # the job keeps the range it was given
    # A group's scans are those made while in the group, whatever codes it holds now (docs/exports.md).
    scans_of_group = body.format == "scans_csv" and body.group_id is not None
    if scans_of_group:
        await _check_owned(conn, key, "qr_groups", body.group_id, "QR group")
    needs_codes = not scans_of_group and (
        body.format != "scans_csv" or body.code_ids or body.folder_id or body.tag)
    rows = await select_codes(conn, key, body) if needs_codes else []
    print_check(rows, body, settings)
    return ExportPlan(body, rows, not needs_codes)


async def queue_export(conn: asyncpg.Connection[Any], key: ApiKey, plan: ExportPlan,
                       settings: ControlPlaneSettings) -> ExportPublic:
    """Insert the job and its codes, in the caller's transaction."""
    job_id = new_id("exp")
    await conn.execute(
        "INSERT INTO jobs (id, kind, org_id, livemode, request, progress_total) VALUES ($1, 'export', $2, $3, $4, $5)",
        job_id, key.org_id, key.livemode,
        {**plan.body.model_dump(mode="json", exclude_none=True), "all_codes": plan.all_codes}, len(plan.rows))
    await conn.execute("INSERT INTO job_codes (job_id, position, code_id)"
                       " SELECT $1, p, id FROM unnest($2::text[]) WITH ORDINALITY AS t(id, p)",
                       job_id, [r["id"] for r in plan.rows])
    return export_object(await fetch_job(conn, key, job_id, "export"), settings)


async def create_export(conn: asyncpg.Connection[Any], key: ApiKey, body: ExportCreate,
                        settings: ControlPlaneSettings, render: RenderCache) -> ExportPublic:
    """Plan, decode a zip's PNGs and queue the job on one connection (the CLI's)."""
    plan = await plan_export(conn, key, body, settings)
    await check_pngs_read(plan.rows, plan.body, settings, render)
    return await queue_export(conn, key, plan, settings)


async def fetch_job(db: Queryable, key: ApiKey, job_id: str,
                    kind: str) -> asyncpg.Record:
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT * FROM jobs WHERE id = $1 AND org_id = $2 AND livemode = $3 AND kind = $4",
        job_id, key.org_id, key.livemode, kind)
    if row is None:
        raise not_found(kind)
    return row


def signature(settings: ControlPlaneSettings, job_id: str, expires: int) -> str:
    """HMAC of the job and expiry, keyed by the image-URL secret (separated from image hashes by a prefix)."""
    message = f"export-file|{job_id}|{expires}".encode()
    return hmac.new(url_secret(settings).encode(), message, hashlib.sha256).hexdigest()


def signature_valid(settings: ControlPlaneSettings, job_id: str, expires: str, given: str, now: float) -> bool:
    # ASCII digits, and few: `isdigit` takes "²", and int() refuses more than 4,300 digits (both a 500 before).
    if not (expires.isascii() and expires.isdigit() and len(expires) <= 15) or int(expires) < now:
        return False
    # ASCII too: compare_digest raises TypeError on any other str (a 500 before).
    return given.isascii() and hmac.compare_digest(signature(settings, job_id, int(expires)), given)


class Progress(TypedDict):
    done: int
    total: int


class ExportPublic(TypedDict):
    id: str
    object: Literal["export"]
    livemode: bool
    status: JobStatus
    format: Format
    progress: Progress
    file_url: str | None
    signed_url: str | None
    file_name: str | None
    file_size: int | None
    error: dict[str, Any] | None
    created_at: str
    finished_at: str | None
    expires_at: str | None


def job_fields(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"], "object": row["kind"], "livemode": row["livemode"], "status": row["status"],
        "progress": {"done": row["progress_done"], "total": row["progress_total"]}, "error": row["error"],
        "created_at": timestamp(row["created_at"]), "finished_at": timestamp(row["finished_at"]),
        "expires_at": timestamp(row["expires_at"]),
    }


def export_object(row: asyncpg.Record, settings: ControlPlaneSettings) -> ExportPublic:
    request = row["request"]
    obj = cast(ExportPublic, {**job_fields(row), "format": request["format"], "file_url": None, "signed_url": None,
                              "file_name": row["file_name"], "file_size": row["file_size"]})
    if row["status"] == "succeeded" and row["file_size"] is not None and row["expires_at"] is not None:
        file_url = f"{settings.public_url}/v1/exports/{row['id']}/file"
        expires = int(row["expires_at"].timestamp())
        obj["file_url"] = file_url
        obj["signed_url"] = f"{file_url}?expires={expires}&signature={signature(settings, row['id'], expires)}"
    return obj


def export_event_object(row: asyncpg.Record, settings: ControlPlaneSettings) -> dict[str, Any]:
    """The export object as `export.*` events carry it: without `signed_url`, a link that needs no key. Events
    reach keys with `webhooks:read` alone (`GET /v1/events`) and every endpoint subscribed to them, while the
    file is for `qr:read`; a receiver reads `GET /v1/exports/{id}` for a fresh link (docs/exports.md)."""
    return {name: value for name, value in export_object(row, settings).items() if name != "signed_url"}


async def list_jobs(ctx: ServiceContext, key: ApiKey, kind: str, page: PageQuery) -> tuple[list[asyncpg.Record], int]:
    return await owned_page(ctx.db, "jobs", key, page, where="kind = $3", args=(kind,), columns=LISTED_JOB_COLUMNS)


async def start_export(ctx: ServiceContext, key: ApiKey, body: ExportCreate) -> ExportPublic:
    """Checks read outside any transaction, and the decoding of a zip's PNGs holds no connection (a logo is read
    through the pool, one statement): many exports decoding at once hold no pooled connection or lock while
    they decode. Only the insert of the job is a transaction. The selection was never locked (each statement
    sees what is committed when it runs); the job leaves out codes deleted since (docs/exports.md, "Order")."""
    render = RenderCache(ctx.db, ctx.cache.redis, ctx.cache.keys)
    async with ctx.connection() as conn:
        plan = await plan_export(conn, key, body, ctx.settings)
    await check_pngs_read(plan.rows, plan.body, ctx.settings, render)
    async with ctx.transaction() as conn:
        return await queue_export(conn, key, plan, ctx.settings)


async def list_exports(ctx: ServiceContext, key: ApiKey, page: PageQuery) -> Listing[ExportPublic]:
    rows, total = await list_jobs(ctx, key, "export", page)
    return Listing([export_object(r, ctx.settings) for r in rows], total, page.limit, page.offset)


async def get_export(ctx: ServiceContext, key: ApiKey, export_id: str) -> ExportPublic:
    return export_object(await fetch_job(ctx.db, key, export_id, "export"), ctx.settings)


@dataclass(frozen=True, slots=True)
class ExportFile:
    name: str
    media_type: str
    size: int
    chunks: AsyncIterator[bytes]


# A file is downloaded, never shown as a page: a browser that opens a signed link (a print shop's) or the
# dashboard's must not sniff it into HTML, frame it or run anything in it, nor pass the signed URL on in a
# Referer if a viewer follows a link inside it (docs/exports.md).
DOWNLOAD_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"


def download_headers(file: ExportFile) -> dict[str, str]:
    """The headers of an export's file, the same from the API and the dashboard."""
    return {"Content-Disposition": f'attachment; filename="{file.name}"', "Content-Length": str(file.size),
            "Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": DOWNLOAD_POLICY, "Referrer-Policy": "no-referrer"}


async def export_file(ctx: ServiceContext, key: ApiKey | None, export_id: str) -> ExportFile:
    """The file of the caller's export (`key`), or of any export (`None`: a signed URL checked by the caller)."""
    if key is not None:
        row = await fetch_job(ctx.db, key, export_id, "export")
    else:
        found: asyncpg.Record | None = await ctx.db.fetchrow("SELECT * FROM jobs WHERE id = $1 AND kind = 'export'",
                                                             export_id)
        if found is None:
            raise not_found("export")
        row = found
    if row["status"] != "succeeded":
        raise Problem(409, f"The export is {row['status']}; its file is not ready.", type="export-not-ready")
    # Gone from `expires_at` on (docs/exports.md), not only once the worker's sweep has deleted the file.
    if row["file_size"] is None or (row["expires_at"] is not None and row["expires_at"] <= datetime.now(UTC)):
        raise Problem(410, "The export's file has expired; request the export again.", type="export-expired")
    chunks = FileStore(ctx.db, ctx.settings.export_dir).read(export_id, row["attempt"])
    return ExportFile(row["file_name"], row["media_type"], row["file_size"], chunks)

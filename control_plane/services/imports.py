"""CSV imports (docs/exports.md): every row checked as `POST /v1/qr-codes` checks a body, then all codes
created in one transaction, or none.

Rows are validated with the API's own `QRCodeCreate` model; references, slugs, metering, design checks
and `qr.created` events go through the same service functions as single creates and bulk mints, batched
(a few statements for 10,000 rows, not 10,000 round trips).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Any, Literal, cast

import asyncpg
import orjson
from pydantic import ValidationError
from typing_extensions import TypedDict

from control_plane.render.images import sync_designs
from control_plane.services.context import ServiceContext
from control_plane.services.exports import JobStatus, Progress, fetch_job, job_fields, list_jobs
from control_plane.services.keys import ApiKey
from control_plane.services.listing import Listing, PageQuery
from control_plane.services.qr_codes import SELECT, code_objects
from control_plane.services.schemas import QRCodeCreate
from control_plane.services.usage import meter_created
from shared.ids import new_id, new_slug, slug_problem
from shared.problems import Problem
from shared.settings import ControlPlaneSettings

MAX_ROWS = 10_000
MAX_BYTES = 20 << 20
PLAIN_COLUMNS = ("name", "url", "group_id", "folder_id", "tags", "slug")
PARAM_PREFIX = "param:"
SLUG_ATTEMPTS = 8
RowError = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ImportRow:
    line: int  # the row's first line in the file (the header is line 1)
    body: QRCodeCreate


# What makes a body an import, checked on the request (422 otherwise) and published as the body's schema
# (`pattern`): UTF-8 text whose first line is a header of at most 100 known columns, each maybe quoted and
# padded with a few spaces or tabs (a parameter's key: at most 100 characters). Rows, and a column named
# twice, are the job's to check (errors by line in its result). Every repetition is bounded, so no line
# longer than MAX_HEADER_CHARS matches and the check never reads further.
MAX_COLUMNS, MAX_HEADER_CHARS = 100, 16_384
_PAD = r"[ \t]{0,8}"
_COLUMN = rf'(?:(?:name|url|group_id|folder_id|tags|slug){_PAD}|(?:utm_|param:){_PAD}[^,"\r\n \t][^,"\r\n]{{0,99}})'
_CELL = rf'(?:{_PAD}{_COLUMN}|"{_PAD}{_COLUMN}")'
HEADER_LINE = rf"\uFEFF?{_CELL}(?:,{_CELL}){{0,{MAX_COLUMNS - 1}}}"
IMPORT_FILE_PATTERN = rf"^{HEADER_LINE}(?:[\r\n][\s\S]*)?$"
_HEADER_LINE = re.compile(HEADER_LINE)
COLUMNS_HINT = "name, url, group_id, folder_id, tags, slug, utm_* or param:KEY"


def _error(line: int, field: str, message: str) -> RowError:
    return {"row": line, "field": field, "message": message}


def _param_key(column: str) -> str | None:
    if column.startswith("utm_") and len(column) > 4:
        return column
    if column.startswith(PARAM_PREFIX) and len(column) > len(PARAM_PREFIX):
        return column[len(PARAM_PREFIX):]
    return None


def _header(names: list[str]) -> tuple[list[str], list[RowError]]:
    columns = [name.strip(" \t") for name in names]
    errors = []
    seen: set[str] = set()
    for column in columns:
        if column not in PLAIN_COLUMNS and _param_key(column) is None:
            errors.append(_error(1, column, f"unknown column; use {COLUMNS_HINT}"))
        elif column in seen:
            errors.append(_error(1, column, "appears twice"))
        seen.add(column)
    return columns, errors


def _body(columns: list[str], values: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    params: dict[str, str] = {}
    for column, raw in zip(columns, values, strict=True):
        value = raw.strip()
        if not value:
            continue
        if (key := _param_key(column)) is not None:
            params[key] = value
        elif column == "url":
            body["destination"] = {"type": "url", "url": value}
        elif column == "tags":
            body["tags"] = [tag.strip() for tag in value.split("|") if tag.strip()]
        else:
            body[column] = value
    if params:
        body["url_params"] = params
    return body


def _column_of(location: tuple[int | str, ...], columns: list[str]) -> str:
    """The CSV column a validation error points at."""
    head = str(location[0]) if location else ""
    if head == "destination":
        return "url"
    if head == "url_params" and len(location) > 1:
        key = str(location[1])
        return key if key in columns else f"{PARAM_PREFIX}{key}"
    return head


def _validate_row(columns: list[str], values: list[str], line: int) -> ImportRow | list[RowError]:
    if len(values) != len(columns):
        return [_error(line, "", f"has {len(values)} fields; the header has {len(columns)}")]
    try:
        body = QRCodeCreate.model_validate(_body(columns, values))
    except ValidationError as exc:
        return [_error(line, _column_of(tuple(e["loc"]), columns), e["msg"].removeprefix("Value error, "))
                for e in exc.errors(include_url=False)]
    if body.slug is not None and (problem := slug_problem(body.slug)):
        return [_error(line, "slug", problem)]
    return ImportRow(line, body)


@dataclass(frozen=True, slots=True)
class ParsedFile:
    rows: list[ImportRow]  # the rows valid on their own
    errors: list[RowError]  # of the others, maybe several a row (file-level errors name line 1)
    records: int  # rows read, valid or not


def parse_csv(data: bytes) -> ParsedFile:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        return ParsedFile([], [_error(line, "", "is not UTF-8 text")], 0)
    if "\x00" in text:
        return ParsedFile([], [_error(text[:text.index("\x00")].count("\n") + 1, "", "contains a NUL character")], 0)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        return ParsedFile([], [_error(1, "", "the file needs a header row (name, url, …)")], 0)
    columns, errors = _header(header)
    if errors:
        return ParsedFile([], errors, 0)
    rows: list[ImportRow] = []
    records = 0
    line = reader.line_num + 1
    try:
        for values in reader:
            if values:  # blank lines are not rows
                if records >= MAX_ROWS:
                    return ParsedFile([], [_error(line, "", f"a file holds at most {MAX_ROWS} rows")], records)
                records += 1
                checked = _validate_row(columns, values, line)
                if isinstance(checked, ImportRow):
                    rows.append(checked)
                else:
                    errors.extend(checked)
            line = reader.line_num + 1
    except csv.Error as exc:
        errors.append(_error(line, "", f"is not valid CSV: {exc}"))
    return ParsedFile(rows, errors, records)


async def _unknown(conn: asyncpg.Connection[Any], key: ApiKey, table: str, ids: set[str]) -> set[str]:
    if not ids:
        return set()
    # FOR KEY SHARE: in the transaction that creates the codes, a delete of the row waits for it, so the codes
    # never refer to a row gone (they are detached afterwards, as any group's or folder's codes).
    found = await conn.fetch(f"SELECT id FROM {table} WHERE id = ANY($1::text[]) AND org_id = $2 AND livemode = $3"
                             " ORDER BY id FOR KEY SHARE", list(ids), key.org_id, key.livemode)
    return ids - {r["id"] for r in found}


async def check_rows(conn: asyncpg.Connection[Any], key: ApiKey, rows: list[ImportRow],
                     settings: ControlPlaneSettings) -> list[RowError]:
    """What only the database can tell: references of another org or none, slugs already taken.

    Run in the transaction that creates the codes: the groups and folders found stay until it commits.
    """
    errors: list[RowError] = []
    for field, table, kind in (("group_id", "qr_groups", "QR group"), ("folder_id", "folders", "folder")):
        unknown = await _unknown(conn, key, table, {getattr(r.body, field) for r in rows} - {None})
        errors += [_error(r.line, field, f"no such {kind}") for r in rows if getattr(r.body, field) in unknown]
    first: dict[str, int] = {}
    for row in rows:
        if row.body.slug is not None:
            if row.body.slug in first:
                errors.append(_error(row.line, "slug", f"repeats the slug of row {first[row.body.slug]}"))
            first.setdefault(row.body.slug, row.line)
    taken = await conn.fetch("SELECT slug FROM qr_codes WHERE domain = $1 AND slug = ANY($2::text[])",
                             settings.default_domain, list(first))
    errors += [_error(first[r["slug"]], "slug", f"is already taken on {settings.default_domain}") for r in taken]
    for row in rows:
        if row.body.domain is not None and row.body.domain.lower() != settings.default_domain:
            errors.append(_error(row.line, "domain", "imports create codes on the default domain"))
    return sorted(errors, key=lambda e: (e["row"], e["field"]))


async def _insert(conn: asyncpg.Connection[Any], key: ApiKey, rows: list[ImportRow], domain: str) -> list[str]:
    """Insert the codes; random slugs that collide are drawn again. Returns the ids in row order."""
    ids = [new_id("qr") for _ in rows]
    slugs = [row.body.slug or new_slug() for row in rows]
    pending = list(range(len(rows)))
    for _ in range(SLUG_ATTEMPTS):
        picked = [rows[i].body for i in pending]
        inserted = await conn.fetch(
            "INSERT INTO qr_codes (id, org_id, livemode, kind, type, name, slug, domain, group_id, destination_type,"
            " destination_url, folder_id, tags)"
            " SELECT i, $1, $2, 'dynamic', 'url', n, s, $3, g, CASE WHEN u IS NULL THEN NULL ELSE 'url' END, u, f,"
            " ARRAY(SELECT jsonb_array_elements_text(t::jsonb))"  # tags as JSON text: arrays of arrays flatten
            " FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])"
            " AS r(i, n, s, g, u, f, t)"
            " ON CONFLICT (domain, slug) WHERE slug IS NOT NULL DO NOTHING RETURNING id",
            key.org_id, key.livemode, domain, [ids[i] for i in pending], [b.name for b in picked],
            [slugs[i] for i in pending], [b.group_id for b in picked],
            [b.destination.url if b.destination else None for b in picked], [b.folder_id for b in picked],
            [orjson.dumps(b.tags).decode() for b in picked])
        done = {r["id"] for r in inserted}
        pending = [i for i in pending if ids[i] not in done]
        if not pending:
            return ids
        if taken := [rows[i] for i in pending if rows[i].body.slug is not None]:
            raise Problem(409, f"The slug '{taken[0].body.slug}' (row {taken[0].line}) was taken meanwhile.",
                          type="slug-taken")
        for i in pending:
            slugs[i] = new_slug()
    raise Problem(503, "Could not allocate free slugs; retry.", headers={"Retry-After": "1"})


async def _insert_params(conn: asyncpg.Connection[Any], ids: list[str], rows: list[ImportRow]) -> None:
    owners, keys, values = [], [], []
    for code_id, row in zip(ids, rows, strict=True):
        for param, value in (row.body.url_params or {}).items():
            owners.append(code_id)
            keys.append(param)
            values.append(value)
    if owners:
        # Insertion order is each map's key order (the `position` identity).
        await conn.execute("INSERT INTO qr_code_url_params (code_id, key, value)"
                           " SELECT o, k, v FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY"
                           " AS t(o, k, v, n) ORDER BY n", owners, keys, values)


async def create_codes(conn: asyncpg.Connection[Any], key: ApiKey, rows: list[ImportRow],
                       settings: ControlPlaneSettings) -> list[str]:
    """Create every row's code inside the caller's transaction, metered and announced (`qr.created`)."""
    await meter_created(conn, key, len(rows))
    ids = await _insert(conn, key, rows, settings.default_domain)
    await _insert_params(conn, ids, rows)
    await sync_designs(conn, settings, ids)
    order = {code_id: n for n, code_id in enumerate(ids)}
    records = sorted(await conn.fetch(f"{SELECT} WHERE c.id = ANY($1::text[])", ids), key=lambda r: order[r["id"]])
    objects = await code_objects(conn, records, settings)
    await conn.copy_records_to_table(
        "events", columns=("id", "org_id", "livemode", "type", "data"),
        records=[(new_id("evt"), key.org_id, key.livemode, "qr.created", {"object": obj}) for obj in objects])
    return ids


class RowProblem(TypedDict):
    row: int
    field: str
    message: str


class ImportResult(TypedDict):
    created: int
    errors: list[RowProblem]


class ImportPublic(TypedDict):
    id: str
    object: Literal["import"]
    livemode: bool
    status: JobStatus
    dry_run: bool
    progress: Progress
    result: ImportResult | None
    error: dict[str, Any] | None
    created_at: str
    finished_at: str | None
    expires_at: str | None


def import_object(row: asyncpg.Record) -> ImportPublic:
    # A running import may hold its committed result while its codes reach the edges: shown once it ends.
    result = row["result"] if row["status"] in ("succeeded", "failed") else None
    obj = {**job_fields(row), "dry_run": bool(row["request"].get("dry_run")), "result": result}
    return cast(ImportPublic, obj)


def check_file(data: bytes) -> None:
    """422 unless `data` is an import: UTF-8 whose first line is a header of known columns (IMPORT_FILE_PATTERN)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise Problem(422, f"The file is not UTF-8 text (line {line}).", type="invalid-import",
                      errors=[{"field": "body", "message": f"line {line} is not UTF-8 text"}]) from None
    first_line = re.split(r"[\r\n]", text, maxsplit=1)[0]
    if len(first_line) <= MAX_HEADER_CHARS and _HEADER_LINE.fullmatch(first_line):
        return
    try:
        unknown = _header(next(csv.reader([first_line[:MAX_HEADER_CHARS].removeprefix("\ufeff")])))[1]
    except (StopIteration, csv.Error):
        unknown = []
    named = [e["field"] for e in unknown if e["message"] != "appears twice"]
    rule = f"the first line must be a header row of at most {MAX_COLUMNS} columns from {COLUMNS_HINT}"
    what = f"unknown column {', '.join(map(repr, named))}" if named else "no header row"
    raise Problem(422, f"The file is not a CSV import ({what}): {rule}.", type="invalid-import",
                  errors=[{"field": name, "message": f"unknown column; use {COLUMNS_HINT}"} for name in named]
                  or [{"field": "body", "message": rule}])


async def create_import(conn: asyncpg.Connection[Any], key: ApiKey, data: bytes, dry_run: bool) -> ImportPublic:
    """Queue an import of `data` (the CSV as uploaded) in the caller's transaction; 422 when it is no import."""
    check_file(data)
    job_id = new_id("imp")
    await conn.execute("INSERT INTO jobs (id, kind, org_id, livemode, request) VALUES ($1, 'import', $2, $3, $4)",
                       job_id, key.org_id, key.livemode, {"dry_run": dry_run})
    await conn.execute("INSERT INTO job_inputs (job_id, body) VALUES ($1, $2)", job_id, data)
    return import_object(await fetch_job(conn, key, job_id, "import"))


async def start_import(ctx: ServiceContext, key: ApiKey, data: bytes, dry_run: bool) -> ImportPublic:
    async with ctx.transaction() as conn:
        return await create_import(conn, key, data, dry_run)


async def list_imports(ctx: ServiceContext, key: ApiKey, page: PageQuery) -> Listing[ImportPublic]:
    rows, total = await list_jobs(ctx, key, "import", page)
    return Listing([import_object(r) for r in rows], total, page.limit, page.offset)


async def get_import(ctx: ServiceContext, key: ApiKey, import_id: str) -> ImportPublic:
    return import_object(await fetch_job(ctx.db, key, import_id, "import"))

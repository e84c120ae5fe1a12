"""`/v1/exports` and `/v1/imports` (docs/exports.md): queue a job (202), follow it, fetch the file."""

from __future__ import annotations

import time

import asyncpg
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from control_plane.api.auth import authenticate
from control_plane.api.http import json_response, list_response, page, parse_body
from control_plane.api.openapi import PAGE, Query, operation
from control_plane.services.export_files import FileStore
from control_plane.services.exports import (
    ExportCreate,
    create_export,
    export_object,
    fetch_job,
    list_jobs,
    signature_valid,
)
from control_plane.services.imports import MAX_BYTES, create_import, import_object
from shared.problems import Problem


@operation("Start an export (label sheets, image bundle, CSV)", "qr:read", body=ExportCreate, status=202,
           returns="Export")
async def start_export(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    body = await parse_body(request, ExportCreate)
    async with request.app.state.db.acquire() as conn, conn.transaction():
        obj = await create_export(conn, key, body, request.app.state.settings)
    return json_response(obj, 202)


@operation("List exports", "qr:read", returns="Export", many=True, query=PAGE)
async def list_exports(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    limit, offset = page(request)
    rows, total = await list_jobs(request.app.state.db, key, "export", limit, offset)
    settings = request.app.state.settings
    return list_response([export_object(r, settings) for r in rows], total, limit, offset)


@operation("Retrieve an export", "qr:read", returns="Export")
async def get_export(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    row = await fetch_job(request.app.state.db, key, request.path_params["export_id"], "export")
    return json_response(export_object(row, request.app.state.settings))


async def _file_row(request: Request, export_id: str) -> asyncpg.Record | None:
    """The job row, for an API key with `qr:read` or for a valid signed URL (no key: a print shop)."""
    db, settings = request.app.state.db, request.app.state.settings
    params = request.query_params
    if "authorization" not in request.headers and "signature" in params:
        if not signature_valid(settings, export_id, params.get("expires", ""), params["signature"], time.time()):
            raise Problem(403, "This link is not valid or has expired; ask for a new one.", type="invalid-signature")
        row: asyncpg.Record | None = await db.fetchrow("SELECT * FROM jobs WHERE id = $1 AND kind = 'export'",
                                                       export_id)
        return row
    key = await authenticate(request, "qr:read")
    return await fetch_job(db, key, export_id, "export")


@operation("Download an export's file (API key, or the signed URL without one)", "qr:read",
           media=("application/pdf", "application/zip", "text/csv"), extra_errors=(410,),
           query=(Query("expires", {"type": "string"}, "signed URL: expiry (unix seconds)"),
                  Query("signature", {"type": "string"}, "signed URL: HMAC")))
async def export_file(request: Request) -> Response:
    export_id = request.path_params["export_id"]
    row = await _file_row(request, export_id)
    if row is None:
        raise Problem(404, "No such export.")
    if row["status"] != "succeeded":
        raise Problem(409, f"The export is {row['status']}; its file is not ready.", type="export-not-ready")
    if row["file_size"] is None:
        raise Problem(410, "The export's file has expired; request the export again.", type="export-expired")
    store = FileStore(request.app.state.db, request.app.state.settings.export_dir)
    headers = {"Content-Disposition": f'attachment; filename="{row["file_name"]}"',
               "Content-Length": str(row["file_size"]), "Cache-Control": "private, no-store"}
    return StreamingResponse(store.read(export_id, row["attempt"]), headers=headers, media_type=row["media_type"])


async def _read_csv(request: Request) -> bytes:
    """The upload, refused with 413 as soon as it passes 20 MiB (from Content-Length, or while streaming)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ("text/csv", "application/csv"):
        raise Problem(415, "Send the file as `Content-Type: text/csv` (UTF-8, comma-separated, header row).")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BYTES:
        raise Problem(413, f"An import file is at most {MAX_BYTES} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BYTES:
            raise Problem(413, f"An import file is at most {MAX_BYTES} bytes.")
    return bytes(body)


@operation("Import codes from a CSV file (all or nothing)", "qr:write", status=202, returns="Import",
           body_media="text/csv",
           extra_errors=(413, 415), query=(Query("dry_run", {"enum": ["true", "false"]}, "validate only"),))
async def start_import(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    dry_run = request.query_params.get("dry_run", "false")
    if dry_run not in ("true", "false"):
        raise Problem(422, "dry_run must be true or false.", errors=[{"field": "dry_run",
                                                                     "message": "must be true or false"}])
    data = await _read_csv(request)
    async with request.app.state.db.acquire() as conn, conn.transaction():
        obj = await create_import(conn, key, data, dry_run == "true")
    return json_response(obj, 202)


@operation("List imports", "qr:read", returns="Import", many=True, query=PAGE)
async def list_imports(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    limit, offset = page(request)
    rows, total = await list_jobs(request.app.state.db, key, "import", limit, offset)
    return list_response([import_object(r) for r in rows], total, limit, offset)


@operation("Retrieve an import and its result", "qr:read", returns="Import")
async def get_import(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    return json_response(import_object(await fetch_job(request.app.state.db, key, request.path_params["import_id"],
                                                       "import")))


routes = [
    Route("/v1/exports", start_export, methods=["POST"]),
    Route("/v1/exports", list_exports, methods=["GET"]),
    Route("/v1/exports/{export_id}", get_export, methods=["GET"]),
    Route("/v1/exports/{export_id}/file", export_file, methods=["GET"]),
    Route("/v1/imports", start_import, methods=["POST"]),
    Route("/v1/imports", list_imports, methods=["GET"]),
    Route("/v1/imports/{import_id}", get_import, methods=["GET"]),
]

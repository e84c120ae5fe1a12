"""`/v1/exports` and `/v1/imports`: HTTP in and out; the rules live in `control_plane.services.exports` and
`control_plane.services.imports` (docs/exports.md)."""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from control_plane.api.auth import authenticate
from control_plane.api.http import json_response, list_response, parse_body, parse_query
from control_plane.api.openapi import operation
from control_plane.api.state import app_state
from control_plane.services import exports, imports
from control_plane.services.exports import MAX_IMAGE_PIXELS, ExportCreate, ExportPublic, signature_valid
from control_plane.services.imports import ImportPublic
from control_plane.services.listing import PageQuery
from shared.problems import Problem


class SignedQuery(BaseModel):
    """A signed URL's proof, for a print shop without an API key."""

    model_config = ConfigDict(extra="ignore")

    expires: str | None = None
    signature: str | None = None


class ImportQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    dry_run: bool = False


@operation("Start an export (label sheets, image bundle, CSV)", "qr:read", body=ExportCreate, status=202,
           returns=ExportPublic,
           error_details=((422, "Validation failed, or a rule the schema cannot state: modules"
                                " under 0.4 mm (`too-small-to-print`), a png over"
                                f" {MAX_IMAGE_PIXELS} pixels a side (`size_mm` at `dpi`), `since` not before"
                                " `until` (by default the time of the request)"),))
async def start_export(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    body = await parse_body(request, ExportCreate)
    return json_response(await exports.start_export(app_state(request).services, key, body), 202)


@operation("List exports", "qr:read", returns=ExportPublic, many=True, query=PageQuery)
async def list_exports(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    page = parse_query(request, PageQuery)
    return list_response(await exports.list_exports(app_state(request).services, key, page))


@operation("Retrieve an export", "qr:read", returns=ExportPublic)
async def get_export(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    return json_response(await exports.get_export(app_state(request).services, key,
                                                  request.path_params["export_id"]))


@operation("Download an export's file (API key, or the signed URL without one)", "qr:read",
           media=("application/pdf", "application/zip", "text/csv"), extra_errors=(410,), query=SignedQuery)
async def export_file(request: Request) -> Response:
    export_id = request.path_params["export_id"]
    services = app_state(request).services
    signed = parse_query(request, SignedQuery)
    # No key and no signature (an empty one included) is a request without credentials: 401, as everywhere.
    if "authorization" not in request.headers and signed.signature:
        if not signature_valid(services.settings, export_id, signed.expires or "", signed.signature, time.time()):
            raise Problem(403, "This link is not valid or has expired; ask for a new one.", type="invalid-signature")
        file = await exports.export_file(services, None, export_id)
    else:
        file = await exports.export_file(services, await authenticate(request, "qr:read"), export_id)
    return StreamingResponse(file.chunks, headers=exports.download_headers(file), media_type=file.media_type)


@operation("Import codes from a CSV file (all or nothing)", "qr:write", status=202, returns=ImportPublic,
           body_media="text/csv", body_pattern=imports.IMPORT_FILE_PATTERN, extra_errors=(413, 415), query=ImportQuery)
async def start_import(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    query = parse_query(request, ImportQuery)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ("text/csv", "application/csv"):
        raise Problem(415, "Send the file as `Content-Type: text/csv` (UTF-8, comma-separated, header row).")
    data = await request.body()  # at most 20 MiB: BodyLimitMiddleware refused anything larger
    return json_response(await imports.start_import(app_state(request).services, key, data, query.dry_run), 202)


@operation("List imports", "qr:read", returns=ImportPublic, many=True, query=PageQuery)
async def list_imports(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    page = parse_query(request, PageQuery)
    return list_response(await imports.list_imports(app_state(request).services, key, page))


@operation("Retrieve an import and its result", "qr:read", returns=ImportPublic)
async def get_import(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    return json_response(await imports.get_import(app_state(request).services, key,
                                                  request.path_params["import_id"]))


routes = [
    Route("/v1/exports", start_export, methods=["POST"]),
    Route("/v1/exports", list_exports, methods=["GET"]),
    Route("/v1/exports/{export_id}", get_export, methods=["GET"]),
    Route("/v1/exports/{export_id}/file", export_file, methods=["GET"]),
    Route("/v1/imports", start_import, methods=["POST"]),
    Route("/v1/imports", list_imports, methods=["GET"]),
    Route("/v1/imports/{import_id}", get_import, methods=["GET"]),
]

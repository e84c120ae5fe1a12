"""Print at volume in the dashboard: start exports and download their files, import codes from CSV
(docs/exports.md). Both go through the same services as `/v1/exports` and `/v1/imports`."""

from __future__ import annotations

from typing import Any

from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from control_plane.dashboard.forms import field_errors, validated
from control_plane.dashboard.visit import Visit, page
from control_plane.services import exports, imports, qr_groups
from control_plane.services.exports import ExportCreate
from control_plane.services.listing import PageQuery
from shared.problems import Problem

FORMATS = ("pdf_sheet", "zip", "codes_csv")
TEMPLATES = ("avery-l7160", "avery-l7163", "avery-5160")
LABELS = ("name", "slug", "short_url", "none")
IMAGE_FORMATS = ("svg", "png", "pdf")
# The export form's inputs by the request fields they become (`_export_body`) where the names differ, so that a
# 422 on `sheet.template` (the print check: docs/exports.md) shows under the Label sheet select. The form has
# no paper input (each template comes on its paper) and offers its selection as the Group select.
EXPORT_INPUTS = {"sheet": "template", "sheet.template": "template", "sheet.paper": "template",
                 "sheet.label": "label", "sheet.crop_marks": "crop_marks", "selection": "group_id"}
MAX_PASTE = 1 << 20  # bytes of CSV in the Import page's box; larger files go through the API or the CLI
# The box as the browser sends it, url-encoded: a byte is at most 3 (`%0D%0A` for a line break, sent as CRLF).
# The control plane's body limit for POST /app/imports is sized to match (docs/dashboard.md).
MAX_PASTE_SENT = 3 * MAX_PASTE


def _export_body(form: dict[str, str]) -> dict[str, Any]:
    """The form as the API's `ExportCreate` body: a group's codes, on one of the label templates or as images."""
    body: dict[str, Any] = {"format": form.get("format", "pdf_sheet"), "group_id": form.get("group_id") or None}
    if body["format"] == "pdf_sheet":
        body["sheet"] = {"template": form.get("template") or "avery-l7160", "label": form.get("label") or "name",
                         "crop_marks": form.get("crop_marks") == "on"}
    elif body["format"] == "zip":
        body["image_format"] = form.get("image_format") or "svg"
    return body


async def _exports_page(visit: Visit, status: int = 200, errors: dict[str, str] | None = None) -> Response:
    ctx, key = visit.stores.services, visit.principal
    listing = await exports.list_exports(ctx, key, PageQuery(limit=25))
    groups = await qr_groups.group_choices(ctx, key)
    values = visit.form or {"group_id": visit.request.query_params.get("group_id", "")}
    return visit.render("exports.html", {
        "listing": listing, "groups": groups, "values": values, "errors": errors or {}, "formats": FORMATS,
        "templates": TEMPLATES, "labels": LABELS, "image_formats": IMAGE_FORMATS,
        "started": visit.request.query_params.get("started", "")}, status)


@page()
async def export_list(visit: Visit) -> Response:
    return await _exports_page(visit)


@page()
async def start_export(visit: Visit) -> Response:
    try:
        body = validated(ExportCreate, _export_body(visit.form))
        started = await exports.start_export(visit.stores.services, visit.principal, body)
    except Problem as problem:
        return await _exports_page(visit, problem.status, field_errors(problem, EXPORT_INPUTS))
    return RedirectResponse(f"/app/exports?started={started['id']}", 303)


@page()
async def export_file(visit: Visit) -> Response:
    """The file, for the signed-in user (the session stands in for the API key)."""
    file = await exports.export_file(visit.stores.services, visit.principal, visit.request.path_params["export_id"])
    return StreamingResponse(file.chunks, media_type=file.media_type, headers=exports.download_headers(file))


async def _imports_page(visit: Visit, status: int = 200, errors: dict[str, str] | None = None) -> Response:
    listing = await imports.list_imports(visit.stores.services, visit.principal, PageQuery(limit=25))
    return visit.render("imports.html", {"listing": listing, "values": visit.form, "errors": errors or {},
                                         "started": visit.request.query_params.get("started", "")}, status)


@page("qr:write")
async def import_list(visit: Visit) -> Response:
    return await _imports_page(visit)


@page("qr:write", field_bytes=MAX_PASTE_SENT)
async def start_import(visit: Visit) -> Response:
    text = visit.form.get("csv", "")
    if not text.strip():
        return await _imports_page(visit, 422, {"csv": "paste a CSV file with a header row"})
    if len(text.encode("utf-8")) > MAX_PASTE:
        return await _imports_page(visit, 413, {"csv": "is larger than 1 MiB; import larger files with"
                                                       " POST /v1/imports or scanroute import"})
    try:
        started = await imports.start_import(visit.stores.services, visit.principal, text.encode("utf-8"),
                                             visit.form.get("dry_run") == "on")
    except Problem as problem:
        return await _imports_page(visit, problem.status, {"csv": problem.detail})
    return RedirectResponse(f"/app/imports?started={started['id']}", 303)


routes = [
    Route("/exports", export_list, methods=["GET"]),
    Route("/exports", start_export, methods=["POST"]),
    Route("/exports/{export_id}/file", export_file, methods=["GET"]),
    Route("/imports", import_list, methods=["GET"]),
    Route("/imports", start_import, methods=["POST"]),
]

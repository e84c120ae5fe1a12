"""Codes: list with search, the API's filters and sorting; create, edit, pause/resume, delete."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from control_plane.dashboard.forms import (
    destination_and_pairs,
    drop_unchanged_url,
    field_errors,
    form_version,
    optional,
    pairs_patch,
    pairs_text,
    validated,
    whole_number,
)
from control_plane.dashboard.pages import routing
from control_plane.dashboard.paging import pages
from control_plane.dashboard.visit import Visit, page
from control_plane.services import exports, folders, qr_codes, qr_groups
from control_plane.services.context import ServiceContext
from control_plane.services.exports import ExportCreate
from control_plane.services.keys import ApiKey
from control_plane.services.schemas import (
    QRCodeBulkUpdate,
    QRCodeCreate,
    QRCodeListQuery,
    QRCodeUpdate,
)
from shared.problems import Problem

STATUSES = ("active", "inactive", "archived")
SORTS = {"-created_at": "newest first", "created_at": "oldest first", "name": "name", "-scan_count": "most scanned"}
FILTERS = ("q", "group_id", "status", "kind", "tag", "sort", "offset", "limit")


async def _group_choices(visit: Visit) -> list[qr_groups.GroupChoice]:
    return await qr_groups.group_choices(visit.stores.services, visit.principal)


@page()
async def code_list(visit: Visit) -> Response:
    params = {k: v for k, v in visit.request.query_params.items() if v and k in FILTERS}
    query = validated(QRCodeListQuery, params)
    listing = await qr_codes.list_codes(visit.stores.services, visit.principal, query)
    updated = whole_number(visit.request.query_params.get("updated", ""))
    notice = f"Updated {updated} codes." if updated is not None else ""
    folder_choices = await folders.folder_choices(visit.stores.services, visit.principal) \
        if visit.can("qr:write") else []
    return visit.render("codes/list.html", {"listing": listing, "query": query, "statuses": STATUSES,
                                            "sorts": SORTS, "pages": pages(visit.request, listing),
                                            "groups": await _group_choices(visit), "notice": notice,
                                            "folders": folder_choices,
                                            "exports": EXPORTS,
                                            "here": str(visit.request.url.path) + (
                                                f"?{visit.request.url.query}" if visit.request.url.query else "")})


def _bulk_changes(form: dict[str, str]) -> dict[str, Any]:
    action = form.get("action")
    if action in ("pause", "resume"):
        return {"status": "inactive" if action == "pause" else "active"}
    if action == "tags":
        return {"tags": _tags(form.get("tags", ""))}
    if action == "group":
        return {"group_id": optional(form.get("group_id"))}
    if action == "folder":
        return {"folder_id": optional(form.get("folder_id"))}
    raise Problem(422, "Choose what to do with the selected codes.")


# Bulk export of the ticked codes (`code_ids` of `POST /v1/exports`): what each choice asks the exports service.
EXPORTS: dict[str, tuple[str, dict[str, Any]]] = {
    "export-sheet": ("label sheet (A4, L7160)", {"format": "pdf_sheet", "sheet": {}}),
    "export-svg": ("SVG images (zip)", {"format": "zip", "image_format": "svg"}),
    "export-png": ("PNG images (zip)", {"format": "zip", "image_format": "png"}),
    "export-csv": ("codes CSV", {"format": "codes_csv"})}


async def _bulk_export(ctx: ServiceContext, key: ApiKey, ids: list[str], action: str) -> Response:
    body = validated(ExportCreate, {**EXPORTS[action][1], "code_ids": ids})
    started = await exports.start_export(ctx, key, body)
    return RedirectResponse(f"/app/exports?started={started['id']}", 303)


@page("qr:write")
async def bulk_update(visit: Visit) -> Response:
    """Checked rows of the list, changed in one all-or-nothing call of the API's bulk update."""
    ids = visit.values("ids")
    if not ids:
        raise Problem(422, "Select at least one code first.")
    if visit.form.get("action") in EXPORTS:  # an export job of exactly these codes, shown on the Print page
        return await _bulk_export(visit.stores.services, visit.principal, ids, visit.form["action"])
    body = validated(QRCodeBulkUpdate, {"ids": ids, "set": _bulk_changes(visit.form)})
    result = await qr_codes.bulk_update(visit.stores.services, visit.principal, body)
    back = visit.form.get("back", "")
    back = back if back.startswith("/app/codes") else "/app/codes"
    back = re.sub(r"[?&]updated=\d+", "", back)
    return RedirectResponse(f"{back}{'&' if '?' in back else '?'}updated={result['updated']}", 303)


def _tags(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _code_fields(form: dict[str, str]) -> dict[str, Any]:
    return {"name": form.get("name", "").strip(), "tags": _tags(form.get("tags", "")),
            "status": optional(form.get("status")), "group_id": optional(form.get("group_id")),
            **destination_and_pairs(form)}


def _form_values(code: Mapping[str, Any]) -> dict[str, str]:
    return {"name": code["name"], "status": code["status"] or "", "group_id": code["group_id"] or "",
            "destination_url": code["destination"]["url"] or "", "tags": ", ".join(code["tags"]),
            "url_params": pairs_text(code["url_params"]), "properties": pairs_text(code["properties"]),
            "version": str(code["version"])}


@page("qr:write")
async def new_code(visit: Visit) -> Response:
    values = {"group_id": visit.request.query_params.get("group_id", "")}
    return visit.render("codes/new.html", {"values": values, "errors": {}, "statuses": STATUSES,
                                           "groups": await _group_choices(visit)})


@page("qr:write")
async def create_code(visit: Visit) -> Response:
    try:
        body = {k: v for k, v in _code_fields(visit.form).items() if v not in (None, {}, [])}
        code = await qr_codes.create_code(visit.stores.services, visit.principal, validated(QRCodeCreate, body))
    except Problem as problem:
        return visit.render("codes/new.html", {"values": visit.form, "errors": field_errors(problem),
                                               "statuses": STATUSES, "groups": await _group_choices(visit)},
                            problem.status)
    return RedirectResponse(f"/app/codes/{code['id']}?created=1", 303)


async def _detail(visit: Visit, code: Mapping[str, Any], *, values: dict[str, str] | None = None,
                  errors: dict[str, str] | None = None, status: int = 200, notice: str = "",
                  failed: routing.Failed | None = None) -> Response:
    if visit.request.query_params.get("created"):
        notice = notice or "Code created."
    intro = "Tried in order on every scan; the first rule whose conditions all match sends the visitor to its URL."
    if code["group_id"]:
        intro += " The group's rules and split come after these only while this code uses the group's destination."
    return visit.render("codes/detail.html", {
        "code": code, "values": values or _form_values(code), "errors": errors or {}, "statuses": STATUSES,
        "notice": notice or routing.notice(visit), "groups": await _group_choices(visit),
        "routing": routing.editor("codes", code, failed) if code["kind"] == "dynamic" else None,
        "rules_intro": intro}, status)


@page()
async def code_detail(visit: Visit) -> Response:
    code = await qr_codes.get_code(visit.stores.services, visit.principal, visit.request.path_params["code_id"])
    return await _detail(visit, code)


@page("qr:write")
async def update_code(visit: Visit) -> Response:
    ctx, key, code_id = visit.stores.services, visit.principal, visit.request.path_params["code_id"]
    before = await qr_codes.get_code(ctx, key, code_id)
    try:
        body = _code_fields(visit.form)
        body["url_params"] = pairs_patch(before["url_params"], body["url_params"])
        body["properties"] = pairs_patch(before["properties"], body["properties"])
        if body["destination"] is None and before["destination"]["type"] not in (None, "url"):
            del body["destination"]
        drop_unchanged_url(body, before)
        code = await qr_codes.update_code(ctx, key, code_id, validated(QRCodeUpdate, body),
                                          if_match=form_version(visit.form))
    except Problem as problem:
        message = "Someone changed this code since you opened it: reload to see their change." \
            if problem.status == 412 else ""
        errors = {"": message} if message else field_errors(problem)
        return await _detail(visit, before, values=visit.form, errors=errors, status=problem.status)
    # The service writes nothing for a form that changes nothing, and keeps the version (docs/api.md §4.1).
    saved = code["version"] != before["version"]
    return await _detail(visit, code, notice="Saved. The next scan follows the change." if saved
                         else "No changes to save.")


@page("qr:write")
async def set_status(visit: Visit) -> Response:
    ctx, key, code_id = visit.stores.services, visit.principal, visit.request.path_params["code_id"]
    body = QRCodeUpdate(status="inactive" if visit.form.get("pause") == "1" else "active")
    await qr_codes.update_code(ctx, key, code_id, body)
    return RedirectResponse(f"/app/codes/{code_id}", 303)


@page("qr:write")
async def delete_code(visit: Visit) -> Response:
    await qr_codes.delete_code(visit.stores.services, visit.principal, visit.request.path_params["code_id"])
    return RedirectResponse("/app/codes", 303)


async def _update_routing(ctx: ServiceContext, key: ApiKey, code_id: str, body: dict[str, Any],
                          if_match: list[int] | None) -> Any:
    return await qr_codes.update_code(ctx, key, code_id, validated(QRCodeUpdate, body), if_match=if_match)


async def _routing_refused(visit: Visit, code: Mapping[str, Any], failed: routing.Failed, status: int) -> Response:
    return await _detail(visit, code, failed=failed, status=status)


ROUTING = routing.Kind("codes", "code", qr_codes.get_code, _update_routing, _routing_refused)

routes = [
    *routing.routes(ROUTING),
    Route("/codes", code_list, methods=["GET"]),
    Route("/codes", create_code, methods=["POST"]),
    Route("/codes/new", new_code, methods=["GET"]),
    Route("/codes/bulk", bulk_update, methods=["POST"]),
    Route("/codes/{code_id}", code_detail, methods=["GET"]),
    Route("/codes/{code_id}", update_code, methods=["POST"]),
    Route("/codes/{code_id}/status", set_status, methods=["POST"]),
    Route("/codes/{code_id}/delete", delete_code, methods=["POST"]),
]

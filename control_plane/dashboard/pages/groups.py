"""Groups: list, create, edit (destination, status, URL params, properties), mint codes, delete."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from control_plane.dashboard.forms import (
    destination_and_pairs,
    drop_unchanged_url,
    field_errors,
    form_version,
    pairs_patch,
    pairs_text,
    validated,
    whole_number,
)
from control_plane.dashboard.pages import routing
from control_plane.dashboard.paging import pages
from control_plane.dashboard.visit import Visit, page
from control_plane.services import qr_groups
from control_plane.services.context import ServiceContext
from control_plane.services.keys import ApiKey
from control_plane.services.schemas import MintCodes, QRGroupCreate, QRGroupListQuery, QRGroupUpdate
from shared.problems import Problem

STATUSES = ("active", "inactive", "archived")


@page()
async def group_list(visit: Visit) -> Response:
    params = dict(visit.request.query_params)
    query = validated(QRGroupListQuery, {k: v for k, v in params.items() if v})
    listing = await qr_groups.list_groups(visit.stores.services, visit.principal, query)
    scans = await qr_groups.scan_totals(visit.stores.services, visit.principal, [g["id"] for g in listing.data])
    return visit.render("groups/list.html", {"listing": listing, "scans": scans, "query": query,
                                             "statuses": STATUSES, "pages": pages(visit.request, listing)})


def _group_fields(form: dict[str, str]) -> dict[str, Any]:
    """The fields the group forms edit, as the API's JSON body; pairs are parsed, empty destination omitted."""
    body: dict[str, Any] = {"name": form.get("name", "").strip(), "description": form.get("description", "")}
    if form.get("status"):
        body["status"] = form["status"]
    return {**body, **destination_and_pairs(form)}


def _form_values(group: Mapping[str, Any]) -> dict[str, str]:
    return {"name": group["name"], "description": group["description"], "status": group["status"] or "",
            "destination_url": (group["destination"] or {}).get("url") or "",
            "url_params": pairs_text(group["url_params"]), "properties": pairs_text(group["properties"]),
            "version": str(group["version"])}


@page("qr:write")
async def new_group(visit: Visit) -> Response:
    return visit.render("groups/new.html", {"values": {"status": "active"}, "errors": {}, "statuses": STATUSES})


@page("qr:write")
async def create_group(visit: Visit) -> Response:
    try:
        body = _group_fields(visit.form)
        if body["destination"] is None:
            del body["destination"]
        group = await qr_groups.create_group(visit.stores.services, visit.principal, validated(QRGroupCreate, body))
    except Problem as problem:
        return visit.render("groups/new.html", {"values": visit.form, "errors": field_errors(problem),
                                                "statuses": STATUSES}, problem.status)
    return RedirectResponse(f"/app/groups/{group['id']}?created=1", 303)


async def _detail(visit: Visit, group: Mapping[str, Any], *, values: dict[str, str] | None = None,
                  errors: dict[str, str] | None = None, status: int = 200, notice: str = "",
                  failed: routing.Failed | None = None) -> Response:
    scans = await qr_groups.scan_totals(visit.stores.services, visit.principal, [group["id"]])
    if visit.request.query_params.get("created"):
        notice = notice or "Group created."
    return visit.render("groups/detail.html", {
        "group": group, "scans": scans.get(group["id"], 0), "values": values or _form_values(group),
        "errors": errors or {}, "statuses": STATUSES, "notice": notice or routing.notice(visit),
        "routing": routing.editor("groups", group, failed),
        "rules_intro": "Tried in order on every scan of the group's codes that use the group's destination; the"
                       " first rule whose conditions all match sends the visitor to its URL."}, status)


@page()
async def group_detail(visit: Visit) -> Response:
    group = await qr_groups.get_group(visit.stores.services, visit.principal, visit.request.path_params["group_id"])
    return await _detail(visit, group)


@page("qr:write")
async def update_group(visit: Visit) -> Response:
    ctx, key, group_id = visit.stores.services, visit.principal, visit.request.path_params["group_id"]
    before = await qr_groups.get_group(ctx, key, group_id)
    try:
        body = _group_fields(visit.form)
        body["url_params"] = pairs_patch(before["url_params"], body["url_params"])
        body["properties"] = pairs_patch(before["properties"], body["properties"])
        if body["destination"] is None and before["destination"]["type"] != "url":
            del body["destination"]  # a page/chatbot destination set through the API is left as it is
        drop_unchanged_url(body, before)
        group = await qr_groups.update_group(ctx, key, group_id, validated(QRGroupUpdate, body),
                                             if_match=form_version(visit.form))
    except Problem as problem:
        message = "Someone changed this group since you opened it: reload to see their change." \
            if problem.status == 412 else ""
        errors = {"": message} if message else field_errors(problem)
        return await _detail(visit, before, values=visit.form, errors=errors, status=problem.status)
    # The service writes nothing for a form that changes nothing, and keeps the version (docs/api.md §4.1).
    saved = group["version"] != before["version"]
    return await _detail(visit, group, notice="Saved. The next scan of any of its codes follows the change."
                         if saved else "No changes to save.")


@page("qr:write")
async def mint_codes(visit: Visit) -> Response:
    ctx, key, group_id = visit.stores.services, visit.principal, visit.request.path_params["group_id"]
    count = whole_number(visit.form.get("count", "")) or 0  # not a number: the API's message for 0
    try:
        body = validated(MintCodes, {"count": count, "name_prefix": visit.form.get("name_prefix", "")})
        minted = await qr_groups.mint_codes(ctx, key, group_id, body)
    except Problem as problem:
        group = await qr_groups.get_group(ctx, key, group_id)
        errors = {f"mint.{k}": v for k, v in field_errors(problem).items()}
        return await _detail(visit, group, errors=errors, status=problem.status)
    group = await qr_groups.get_group(ctx, key, group_id)
    return await _detail(visit, group, notice=f"Minted {len(minted)} codes.")


@page("qr:write")
async def delete_group(visit: Visit) -> Response:
    await qr_groups.delete_group(visit.stores.services, visit.principal, visit.request.path_params["group_id"])
    return RedirectResponse("/app/groups", 303)


async def _update_routing(ctx: ServiceContext, key: ApiKey, group_id: str, body: dict[str, Any],
                          if_match: list[int] | None) -> Any:
    return await qr_groups.update_group(ctx, key, group_id, validated(QRGroupUpdate, body), if_match=if_match)


async def _routing_refused(visit: Visit, group: Mapping[str, Any], failed: routing.Failed, status: int) -> Response:
    return await _detail(visit, group, failed=failed, status=status)


ROUTING = routing.Kind("groups", "group", qr_groups.get_group, _update_routing, _routing_refused)

routes = [
    *routing.routes(ROUTING),
    Route("/groups", group_list, methods=["GET"]),
    Route("/groups", create_group, methods=["POST"]),
    Route("/groups/new", new_group, methods=["GET"]),
    Route("/groups/{group_id}", group_detail, methods=["GET"]),
    Route("/groups/{group_id}", update_group, methods=["POST"]),
    Route("/groups/{group_id}/mint", mint_codes, methods=["POST"]),
    Route("/groups/{group_id}/delete", delete_group, methods=["POST"]),
]

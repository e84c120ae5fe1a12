"""Webhook endpoints and their deliveries: create (secret shown once), test, rotate, enable/disable, delete."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from control_plane.dashboard.forms import field_errors, validated
from control_plane.dashboard.paging import pages
from control_plane.dashboard.visit import Visit, page
from control_plane.services import webhook_endpoints as endpoints
from control_plane.services.listing import PageQuery
from shared.outbox import EVENT_TYPES
from shared.problems import Problem


def _events(visit: Visit) -> list[str]:
    chosen = visit.values("events")
    return [endpoints.ALL_EVENTS] if endpoints.ALL_EVENTS in chosen else chosen


async def _list(visit: Visit, *, errors: dict[str, str] | None = None, status: int = 200) -> Response:
    listing = await endpoints.list_endpoints(visit.stores.services, visit.principal, PageQuery(limit=100))
    return visit.render("webhooks/list.html", {"endpoints": listing.data, "errors": errors or {},
                                               "event_types": EVENT_TYPES, "values": visit.form,
                                               "chosen": visit.values("events")}, status)


@page("webhooks:read")
async def endpoint_list(visit: Visit) -> Response:
    return await _list(visit)


@page("webhooks:write")
async def create_endpoint(visit: Visit) -> Response:
    try:
        fields = {"url": visit.form.get("url", ""), "events": _events(visit),
                  "description": visit.form.get("description", "")}
        body = validated(endpoints.WebhookEndpointCreate, fields)
        created = await endpoints.create_endpoint(visit.stores.services, visit.principal, body)
    except Problem as problem:
        return await _list(visit, errors=field_errors(problem), status=problem.status)
    return await _detail(visit, created, secret=created.get("secret"))


async def _detail(visit: Visit, endpoint: Mapping[str, Any], *, secret: str | None = None, notice: str = "",
                  error: str = "", status: int = 200) -> Response:
    params = {k: v for k, v in visit.request.query_params.items() if v and k in ("status", "offset")}
    query = validated(endpoints.DeliveryListQuery, params)
    deliveries = await endpoints.list_deliveries(visit.stores.services, visit.principal, endpoint["id"], query)
    return visit.render("webhooks/detail.html", {
        "endpoint": endpoint, "secret": secret, "notice": notice, "error": error, "deliveries": deliveries,
        "pages": pages(visit.request, deliveries), "query": query}, status)


@page("webhooks:read")
async def endpoint_detail(visit: Visit) -> Response:
    endpoint = await endpoints.get_endpoint(visit.stores.services, visit.principal,
                                            visit.request.path_params["endpoint_id"])
    return await _detail(visit, endpoint)


@page("webhooks:write")
async def endpoint_action(visit: Visit) -> Response:
    ctx, key, endpoint_id = visit.stores.services, visit.principal, visit.request.path_params["endpoint_id"]
    action = visit.form.get("action")
    if action == "delete":
        await endpoints.delete_endpoint(ctx, key, endpoint_id)
        return RedirectResponse("/app/webhooks", 303)
    try:
        if action == "rotate":
            rotated = await endpoints.rotate_secret(ctx, key, endpoint_id)
            return await _detail(visit, rotated, secret=rotated.get("secret"),
                                 notice="New secret made; the previous one keeps signing for a grace period.")
        if action == "test":
            await endpoints.send_test_event(ctx, key, endpoint_id)
            notice = "A test event is queued; its delivery appears below."
        elif action in ("enable", "disable"):
            body = endpoints.WebhookEndpointUpdate(enabled=action == "enable")
            await endpoints.update_endpoint(ctx, key, endpoint_id, body)
            notice = f"Endpoint {action}d."
        else:
            raise Problem(400, "Unknown action.")
    except Problem as problem:
        endpoint = await endpoints.get_endpoint(ctx, key, endpoint_id)
        return await _detail(visit, endpoint, error=problem.detail, status=problem.status)
    return await _detail(visit, await endpoints.get_endpoint(ctx, key, endpoint_id), notice=notice)


routes = [
    Route("/webhooks", endpoint_list, methods=["GET"]),
    Route("/webhooks", create_endpoint, methods=["POST"]),
    Route("/webhooks/{endpoint_id}", endpoint_detail, methods=["GET"]),
    Route("/webhooks/{endpoint_id}", endpoint_action, methods=["POST"]),
]

"""API keys of the organisation in the session's mode: create (the secret is shown once), revoke."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from control_plane.dashboard.forms import field_errors, validated, whole_number
from control_plane.dashboard.paging import pages
from control_plane.dashboard.visit import Visit, page
from control_plane.services import api_keys
from control_plane.services.keys import SCOPES
from control_plane.services.listing import PageQuery
from shared.problems import Problem

PER_PAGE = 100


async def _page(visit: Visit, *, created: api_keys.ApiKeyPublic | None = None, errors: dict[str, str] | None = None,
                status: int = 200) -> Response:
    query = validated(PageQuery, {"limit": PER_PAGE, "offset": visit.request.query_params.get("offset") or 0})
    listing = await api_keys.list_api_keys(visit.stores.services, visit.principal, query)
    return visit.render("api_keys.html", {"keys": listing.data, "created": created, "errors": errors or {},
                                          "scopes": SCOPES, "values": visit.form,
                                          "pages": pages(visit.request, listing), "offset": query.offset}, status)


@page("keys:write")
async def key_list(visit: Visit) -> Response:
    return await _page(visit)


@page("keys:write")
async def create_key(visit: Visit) -> Response:
    try:
        body = validated(api_keys.ApiKeyCreate, {"name": visit.form.get("name", ""), "scopes": visit.values("scopes")})
        created = await api_keys.create_api_key(visit.stores.services, visit.principal, body)
    except Problem as problem:
        return await _page(visit, errors=field_errors(problem), status=problem.status)
    return await _page(visit, created=created)


@page("keys:write")
async def revoke_key(visit: Visit) -> Response:
    await api_keys.revoke_api_key(visit.stores.services, visit.principal, visit.request.path_params["key_id"])
    offset = whole_number(visit.form.get("offset", ""))  # back to the page the key was on
    return RedirectResponse(f"/app/api-keys?offset={offset}" if offset else "/app/api-keys", 303)


routes = [
    Route("/api-keys", key_list, methods=["GET"]),
    Route("/api-keys", create_key, methods=["POST"]),
    Route("/api-keys/{key_id}/revoke", revoke_key, methods=["POST"]),
]

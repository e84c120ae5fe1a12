"""The dashboard's first page: the organisation, the mode and this month's usage against the plan."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from control_plane.dashboard.visit import Visit, page
from control_plane.services.usage import usage


@page()
async def overview(visit: Visit) -> Response:
    return visit.render("overview.html", {"usage": await usage(visit.stores.db, visit.principal)})


routes = [Route("/", overview, methods=["GET"])]

"""Usage against the plan, this calendar month."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from control_plane.dashboard.visit import Visit, page
from control_plane.services.usage import PLANS, usage


@page()
async def usage_page(visit: Visit) -> Response:
    return visit.render("usage.html", {"usage": await usage(visit.stores.db, visit.principal), "plans": PLANS})


routes = [Route("/usage", usage_page, methods=["GET"])]

"""Everything under /app/: pages and the static assets they use."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from control_plane.dashboard.errors import ErrorPages
from control_plane.dashboard.pages import (
    account,
    analytics,
    api_keys,
    codes,
    design,
    groups,
    members,
    overview,
    printing,
    sign_in,
    usage,
    webhooks,
)

STATIC = "/app/static"


def dashboard_mount() -> Mount:
    routes: list[BaseRoute] = [
        *overview.routes,
        *sign_in.routes,
        *members.routes,
        *account.routes,
        *groups.routes,
        *codes.routes,
        *design.routes,
        *analytics.routes,
        *api_keys.routes,
        *webhooks.routes,
        *usage.routes,
        *printing.routes,
        Mount("/static", StaticFiles(packages=[("control_plane.dashboard", "static")]), name="static"),
    ]
    return Mount("/app", routes=routes, middleware=[Middleware(ErrorPages)])

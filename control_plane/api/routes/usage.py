"""GET /v1/usage: the usage meter (docs/api.md §2.9)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import authenticate
from control_plane.api.http import json_response
from control_plane.api.openapi import operation
from control_plane.api.state import app_state
from control_plane.services.usage import UsagePublic, usage


@operation("This month's usage meter", "qr:read", returns=UsagePublic)
async def get_usage(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    return json_response(await usage(app_state(request).db, key))


routes = [Route("/v1/usage", get_usage, methods=["GET"])]

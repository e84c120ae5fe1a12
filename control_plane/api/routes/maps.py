"""The `url-params` and `properties` sub-resources of codes and groups: one key at a time."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import authenticate
from control_plane.api.http import json_response, parse_body
from control_plane.api.openapi import operation
from control_plane.api.state import app_state
from control_plane.services import maps
from control_plane.services.maps import MapField, MapItemPublic, MapOwner, MapValue

SEGMENTS: dict[str, MapField] = {"url-params": "url_params", "properties": "properties"}


def _routes_for(prefix: str, owner: MapOwner, segment: str, field: MapField) -> list[Route]:
    @operation(f"List a code's or group's {field}", "qr:read", returns=MapItemPublic, many=True)
    async def list_items(request: Request) -> Response:
        key = await authenticate(request, "qr:read")
        items = await maps.list_items(app_state(request).services, key, owner, field, request.path_params["owner_id"])
        return json_response({"object": "list", "data": items, "total": len(items), "limit": 50, "offset": 0,
                              "has_more": False})

    async def change(request: Request, value: str | None) -> MapItemPublic:
        key = await authenticate(request, "qr:write")
        return await maps.set_item(app_state(request).services, key, owner, field, request.path_params["owner_id"],
                                   request.path_params["key"], value)

    @operation(f"Set one of {field}", "qr:write", body=MapValue, returns=MapItemPublic)
    async def put_item(request: Request) -> Response:
        await authenticate(request, "qr:write")
        body = await parse_body(request, MapValue)
        return json_response(await change(request, body.value))

    @operation(f"Remove one of {field}", "qr:write", status=204)
    async def delete_item(request: Request) -> Response:
        await change(request, None)
        return Response(status_code=204)

    # `{key:path}`: a key is any 1-64 characters (docs/api.md §2.1), `/` included; sent as `%2F` (or as is),
    # it reaches the route decoded, so every key a list shows can be addressed here.
    base = f"{prefix}/{{owner_id}}/{segment}"
    return [
        Route(base, list_items, methods=["GET"]),
        Route(base + "/{key:path}", put_item, methods=["PUT"]),
        Route(base + "/{key:path}", delete_item, methods=["DELETE"]),
    ]


routes = [route for prefix, owner in (("/v1/qr-codes", maps.CODES), ("/v1/qr-groups", maps.GROUPS))
          for segment, field in SEGMENTS.items() for route in _routes_for(prefix, owner, segment, field)]

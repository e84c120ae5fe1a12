"""The `url-params` and `properties` sub-resources of codes and groups: one key at a time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
from pydantic import StringConstraints
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import authenticate
from control_plane.api.http import json_response, parse_body
from control_plane.api.openapi import operation
from control_plane.services.keys import ApiKey
from control_plane.services.params import apply_params
from control_plane.services.schemas import Body
from shared.outbox import previous_attributes, record_event
from shared.problems import Problem, field_error

Loader = Callable[[Any, "asyncpg.Connection[Any]", ApiKey, str, bool], Awaitable[dict[str, Any]]]
Publisher = Callable[[Any, str], Awaitable[None]]
MAPS = {"url-params": ("url_params", "url_param"), "properties": ("properties", "property")}


class MapValue(Body):
    value: Annotated[str, StringConstraints(max_length=512)]


@dataclass(frozen=True)
class MapOwner:
    prefix: str  # /v1/qr-codes
    table: str  # qr_codes
    table_prefix: str  # qr_code → qr_code_url_params
    owner_column: str  # code_id
    event: str  # qr.updated
    load: Loader  # the owner's API object; 404 when not the caller's
    publish: Publisher  # write-through after commit


def _item(kind: str, key: str, value: str) -> dict[str, str]:
    return {"object": kind, "key": key, "value": value}


def map_routes(owner: MapOwner) -> list[Route]:
    routes = []
    for segment, (field, kind) in MAPS.items():
        routes += _routes_for(owner, segment, field, kind)
    return routes


def _routes_for(owner: MapOwner, segment: str, field: str, kind: str) -> list[Route]:
    def parts(request: Request) -> tuple[str, str, str]:
        return field, kind, request.path_params["owner_id"]

    @operation(f"List a code's or group's {field}", "qr:read", returns="MapItem", many=True)
    async def list_items(request: Request) -> Response:
        key = await authenticate(request, "qr:read")
        field, kind, owner_id = parts(request)
        async with request.app.state.db.acquire() as conn:
            obj = await owner.load(request.app.state, conn, key, owner_id, False)
        items = [_item(kind, k, v) for k, v in obj[field].items()]
        return json_response({"object": "list", "data": items, "total": len(items), "limit": 50, "offset": 0,
                              "has_more": False})

    async def change(request: Request, value: str | None) -> dict[str, Any]:
        key = await authenticate(request, "qr:write")
        field, kind, owner_id = parts(request)
        name = request.path_params["key"]
        if not 1 <= len(name) <= 64:
            raise field_error("key", "must be 1-64 characters")
        async with request.app.state.db.acquire() as conn, conn.transaction():
            before = await owner.load(request.app.state, conn, key, owner_id, True)
            if value is None and name not in before[field]:
                raise Problem(404, f"No {kind} '{name}'.")
            table = f"{owner.table_prefix}_{field}"
            await apply_params(conn, table, owner.owner_column, owner_id, {name: value})
            await conn.execute(f"UPDATE {owner.table} SET version = version + 1, updated_at = now() WHERE id = $1",
                               owner_id)
            after = await owner.load(request.app.state, conn, key, owner_id, False)
            await record_event(conn, key.org_id, key.livemode, owner.event, after, previous_attributes(before, after))
        await owner.publish(request.app.state, owner_id)
        return _item(kind, name, value or "")

    @operation(f"Set one of {field}", "qr:write", body=MapValue, returns="MapItem")
    async def put_item(request: Request) -> Response:
        body = await parse_body(request, MapValue)
        return json_response(await change(request, body.value))

    @operation(f"Remove one of {field}", "qr:write", status=204)
    async def delete_item(request: Request) -> Response:
        await change(request, None)
        return Response(status_code=204)

    base = f"{owner.prefix}/{{owner_id}}/{segment}"
    return [
        Route(base, list_items, methods=["GET"]),
        Route(base + "/{key:str}", put_item, methods=["PUT"]),
        Route(base + "/{key:str}", delete_item, methods=["DELETE"]),
    ]

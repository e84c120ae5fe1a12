"""`/v1/api-keys` (scope keys:write): keys are shown once; a revoked key is refused at once."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import asyncpg
from pydantic import Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import authenticate
from control_plane.api.http import json_response, list_response, not_found, owned_page, parse_body
from control_plane.api.openapi import PAGE, operation
from control_plane.services.keys import create_key
from control_plane.services.schemas import Body
from shared.problems import Problem, field_error
from shared.times import timestamp

Scope = Literal["qr:read", "qr:write", "webhooks:read", "webhooks:write", "keys:write"]


class ApiKeyCreate(Body):
    name: Annotated[str, StringConstraints(max_length=200)] = ""
    scopes: Annotated[list[Scope], Field(min_length=1)]


def key_object(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["id"], "object": "api_key", "livemode": row["livemode"], "name": row["name"],
            "prefix": row["prefix"], "last4": row["last4"], "scopes": row["scopes"],
            "created_at": timestamp(row["created_at"]), "revoked_at": timestamp(row["revoked_at"])}


@operation("Create an API key (the secret is shown once)", "keys:write", body=ApiKeyCreate, status=201,
           returns="ApiKey")
async def create_api_key(request: Request) -> Response:
    caller = await authenticate(request, "keys:write")
    body = await parse_body(request, ApiKeyCreate)
    # A key can hand out only the scopes it holds itself.
    if extra := sorted(set(body.scopes) - caller.scopes):
        raise field_error("scopes", f"this API key does not hold {', '.join(extra)}")
    db = request.app.state.db
    async with db.acquire() as conn, conn.transaction():
        key = await create_key(conn, caller.org_id, livemode=caller.livemode, scopes=sorted(set(body.scopes)),
                               name=body.name)
        row = await conn.fetchrow("SELECT * FROM api_keys WHERE id = $1", key.id)
    return json_response({**key_object(row), "secret": key.secret}, 201)


@operation("List API keys", "keys:write", returns="ApiKey", many=True, query=PAGE)
async def list_api_keys(request: Request) -> Response:
    caller = await authenticate(request, "keys:write")
    rows, total, limit, offset = await owned_page(request, "api_keys", (caller.org_id, caller.livemode),
                                                  where="revoked_at IS NULL")
    return list_response([key_object(r) for r in rows], total, limit, offset)


@operation("Revoke an API key", "keys:write", status=204)
async def revoke_api_key(request: Request) -> Response:
    caller = await authenticate(request, "keys:write")
    # A key may revoke only keys whose scopes it holds itself (as it may create only those).
    scopes = await request.app.state.db.fetchval(
        "WITH target AS (SELECT id, scopes FROM api_keys WHERE id = $1 AND org_id = $2 AND livemode = $3"
        " AND revoked_at IS NULL), revoked AS (UPDATE api_keys SET revoked_at = now() WHERE id = (SELECT id FROM"
        " target) AND scopes <@ $4::text[] RETURNING id) SELECT scopes FROM target",
        request.path_params["key_id"], caller.org_id, caller.livemode, sorted(caller.scopes))
    if scopes is None:
        raise not_found("API key")
    if extra := sorted(set(scopes) - caller.scopes):
        raise Problem(403, f"This API key cannot revoke a key holding {', '.join(extra)}.")
    return Response(status_code=204)


routes = [
    Route("/v1/api-keys", create_api_key, methods=["POST"]),
    Route("/v1/api-keys", list_api_keys, methods=["GET"]),
    Route("/v1/api-keys/{key_id}", revoke_api_key, methods=["DELETE"]),
]

"""`/v1/api-keys` (scope keys:write): HTTP in and out; the rules live in `control_plane.services.api_keys`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import authenticate
from control_plane.api.http import SECRET_SHOWN_ONCE, json_response, list_response, parse_body, parse_query
from control_plane.api.openapi import operation
from control_plane.api.state import app_state
from control_plane.services import api_keys
from control_plane.services.api_keys import ApiKeyCreate, ApiKeyPublic
from control_plane.services.listing import PageQuery


@operation("Create an API key (the secret is shown once)", "keys:write", body=ApiKeyCreate, status=201,
           returns=ApiKeyPublic)
async def create_api_key(request: Request) -> Response:
    caller = await authenticate(request, "keys:write")
    body = await parse_body(request, ApiKeyCreate)
    return json_response(await api_keys.create_api_key(app_state(request).services, caller, body), 201,
                         SECRET_SHOWN_ONCE)


@operation("List API keys", "keys:write", returns=ApiKeyPublic, many=True, query=PageQuery)
async def list_api_keys(request: Request) -> Response:
    caller = await authenticate(request, "keys:write")
    page = parse_query(request, PageQuery)
    return list_response(await api_keys.list_api_keys(app_state(request).services, caller, page))


@operation("Revoke an API key", "keys:write", status=204)
async def revoke_api_key(request: Request) -> Response:
    caller = await authenticate(request, "keys:write")
    await api_keys.revoke_api_key(app_state(request).services, caller, request.path_params["key_id"])
    return Response(status_code=204)


routes = [
    Route("/v1/api-keys", create_api_key, methods=["POST"]),
    Route("/v1/api-keys", list_api_keys, methods=["GET"]),
    Route("/v1/api-keys/{key_id}", revoke_api_key, methods=["DELETE"]),
]

"""`/v1/qr-groups`: HTTP in and out; the rules live in `control_plane.services.qr_groups`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import authenticate
from control_plane.api.http import if_match, json_response, list_response, parse_body, parse_query, versioned_response
from control_plane.api.openapi import operation
from control_plane.api.state import app_state
from control_plane.services import qr_groups
from control_plane.services.qr_codes import QRCodePublic
from control_plane.services.qr_groups import QRGroupPublic
from control_plane.services.schemas import MintCodes, QRGroupCreate, QRGroupListQuery, QRGroupUpdate


@operation("Create a QR group", "qr:write", body=QRGroupCreate, status=201, returns=QRGroupPublic)
async def create_group(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    body = await parse_body(request, QRGroupCreate)
    return versioned_response(await qr_groups.create_group(app_state(request).services, key, body), 201)


@operation("List QR groups", "qr:read", returns=QRGroupPublic, many=True, query=QRGroupListQuery)
async def list_groups(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    query = parse_query(request, QRGroupListQuery)
    return list_response(await qr_groups.list_groups(app_state(request).services, key, query))


@operation("Retrieve a QR group", "qr:read", returns=QRGroupPublic)
async def get_group(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    return versioned_response(await qr_groups.get_group(app_state(request).services, key,
                                                        request.path_params["group_id"]))


@operation("Update a QR group (JSON Merge Patch)", "qr:write", body=QRGroupUpdate, returns=QRGroupPublic,
           conditional=True)
async def update_group(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    body = await parse_body(request, QRGroupUpdate)
    group_id = request.path_params["group_id"]
    return versioned_response(await qr_groups.update_group(app_state(request).services, key, group_id, body,
                                                           if_match=if_match(request)))


@operation("Delete a QR group (its codes stay, detached)", "qr:write", status=204, conditional=True)
async def delete_group(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    await qr_groups.delete_group(app_state(request).services, key, request.path_params["group_id"],
                                 if_match=if_match(request))
    return Response(status_code=204)


@operation("Mint child codes that inherit from the group", "qr:write", body=MintCodes, status=201,
           returns=QRCodePublic, many=True, extra_errors=(402,))
async def mint_codes(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    body = await parse_body(request, MintCodes)
    group_id = request.path_params["group_id"]
    objects = await qr_groups.mint_codes(app_state(request).services, key, group_id, body)
    return json_response({"object": "list", "data": objects, "total": len(objects)}, 201)


routes = [
    Route("/v1/qr-groups", create_group, methods=["POST"]),
    Route("/v1/qr-groups", list_groups, methods=["GET"]),
    Route("/v1/qr-groups/{group_id}", get_group, methods=["GET"]),
    Route("/v1/qr-groups/{group_id}", update_group, methods=["PATCH"]),
    Route("/v1/qr-groups/{group_id}", delete_group, methods=["DELETE"]),
    Route("/v1/qr-groups/{group_id}/codes", mint_codes, methods=["POST"]),
]

"""`/v1/folders`: HTTP in and out; the rules live in `control_plane.services.folders`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import authenticate
from control_plane.api.http import json_response, list_response, parse_body, parse_query
from control_plane.api.openapi import operation
from control_plane.api.state import app_state
from control_plane.services import folders
from control_plane.services.folders import FolderBody, FolderPublic
from control_plane.services.listing import PageQuery


@operation("Create a folder", "qr:write", body=FolderBody, status=201, returns=FolderPublic)
async def create_folder(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    body = await parse_body(request, FolderBody)
    return json_response(await folders.create_folder(app_state(request).services, key, body), 201)


@operation("List folders", "qr:read", returns=FolderPublic, many=True, query=PageQuery)
async def list_folders(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    page = parse_query(request, PageQuery)
    return list_response(await folders.list_folders(app_state(request).services, key, page))


@operation("Retrieve a folder", "qr:read", returns=FolderPublic)
async def get_folder(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    return json_response(await folders.get_folder(app_state(request).services, key,
                                                  request.path_params["folder_id"]))


@operation("Rename a folder", "qr:write", body=FolderBody, returns=FolderPublic)
async def update_folder(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    body = await parse_body(request, FolderBody)
    folder_id = request.path_params["folder_id"]
    return json_response(await folders.rename_folder(app_state(request).services, key, folder_id, body))


@operation("Delete a folder (its codes stay)", "qr:write", status=204)
async def delete_folder(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    await folders.delete_folder(app_state(request).services, key, request.path_params["folder_id"])
    return Response(status_code=204)


routes = [
    Route("/v1/folders", create_folder, methods=["POST"]),
    Route("/v1/folders", list_folders, methods=["GET"]),
    Route("/v1/folders/{folder_id}", get_folder, methods=["GET"]),
    Route("/v1/folders/{folder_id}", update_folder, methods=["PATCH"]),
    Route("/v1/folders/{folder_id}", delete_folder, methods=["DELETE"]),
]

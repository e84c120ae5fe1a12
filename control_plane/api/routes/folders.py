"""`/v1/folders`: named folders for codes; deleting one leaves its codes without a folder."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from pydantic import StringConstraints
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import authenticate
from control_plane.api.http import json_response, list_response, not_found, owned_page, parse_body
from control_plane.api.openapi import PAGE, operation
from control_plane.services.schemas import Body
from shared.ids import new_id
from shared.times import timestamp


class FolderBody(Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]


def folder_object(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["id"], "object": "folder", "livemode": row["livemode"], "name": row["name"],
            "created_at": timestamp(row["created_at"]), "updated_at": timestamp(row["updated_at"])}


@operation("Create a folder", "qr:write", body=FolderBody, status=201, returns="Folder")
async def create_folder(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    body = await parse_body(request, FolderBody)
    row = await request.app.state.db.fetchrow(
        "INSERT INTO folders (id, org_id, livemode, name) VALUES ($1, $2, $3, $4) RETURNING *",
        new_id("fld"), key.org_id, key.livemode, body.name)
    return json_response(folder_object(row), 201)


@operation("List folders", "qr:read", returns="Folder", many=True, query=PAGE)
async def list_folders(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    rows, total, limit, offset = await owned_page(request, "folders", (key.org_id, key.livemode))
    return list_response([folder_object(r) for r in rows], total, limit, offset)


@operation("Retrieve a folder", "qr:read", returns="Folder")
async def get_folder(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    row = await request.app.state.db.fetchrow("SELECT * FROM folders WHERE id = $1 AND org_id = $2 AND livemode = $3",
                                              request.path_params["folder_id"], key.org_id, key.livemode)
    if row is None:
        raise not_found("folder")
    return json_response(folder_object(row))


@operation("Rename a folder", "qr:write", body=FolderBody, returns="Folder")
async def update_folder(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    body = await parse_body(request, FolderBody)
    row = await request.app.state.db.fetchrow(
        "UPDATE folders SET name = $4, updated_at = now() WHERE id = $1 AND org_id = $2 AND livemode = $3"
        " RETURNING *", request.path_params["folder_id"], key.org_id, key.livemode, body.name)
    if row is None:
        raise not_found("folder")
    return json_response(folder_object(row))


@operation("Delete a folder (its codes stay)", "qr:write", status=204)
async def delete_folder(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    deleted = await request.app.state.db.fetchval(
        "DELETE FROM folders WHERE id = $1 AND org_id = $2 AND livemode = $3 RETURNING id",
        request.path_params["folder_id"], key.org_id, key.livemode)
    if deleted is None:
        raise not_found("folder")
    return Response(status_code=204)


routes = [
    Route("/v1/folders", create_folder, methods=["POST"]),
    Route("/v1/folders", list_folders, methods=["GET"]),
    Route("/v1/folders/{folder_id}", get_folder, methods=["GET"]),
    Route("/v1/folders/{folder_id}", update_folder, methods=["PATCH"]),
    Route("/v1/folders/{folder_id}", delete_folder, methods=["DELETE"]),
]

"""`/v1/qr-groups`: a group's destination, status and params are inherited by its codes at scan time."""

from __future__ import annotations

from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import authenticate
from control_plane.api.http import json_response, list_response, not_found, page, parse_body
from control_plane.api.openapi import PAGE, Query, operation
from control_plane.api.routes.maps import MapOwner, map_routes
from control_plane.render.images import sync_designs
from control_plane.services.codes import SELECT as CODE_SELECT
from control_plane.services.codes import code_objects
from control_plane.services.destinations import destination_columns, destination_object, merge_destination
from control_plane.services.keys import ApiKey
from control_plane.services.mint import mint
from control_plane.services.params import apply_params, pairs_to_dict
from control_plane.services.schemas import MintCodes, QRGroupCreate, QRGroupUpdate
from shared.edge_rows import GROUP_COLUMNS
from shared.ids import new_id
from shared.outbox import previous_attributes, record_event
from shared.times import timestamp

SELECT = f"""
SELECT {GROUP_COLUMNS}, g.org_id, g.livemode, g.name, g.description, g.created_at, g.updated_at, g.code_count
FROM qr_groups g"""
OWNED = "g.org_id = $1 AND g.livemode = $2"


def group_object(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"], "object": "qr_group", "livemode": row["livemode"], "name": row["name"],
        "description": row["description"], "status": row["status"],
        "destination": destination_object(row), "url_params": pairs_to_dict(row["url_params"]),
        "properties": pairs_to_dict(row["properties"]), "code_count": row["code_count"],
        "created_at": timestamp(row["created_at"]), "updated_at": timestamp(row["updated_at"]),
    }


async def fetch_group(db: asyncpg.Pool[Any] | asyncpg.Connection[Any], key: ApiKey, group_id: str,
                      *, lock: bool = False) -> asyncpg.Record:
    suffix = " FOR UPDATE OF g" if lock else ""
    row: asyncpg.Record | None = await db.fetchrow(f"{SELECT} WHERE {OWNED} AND g.id = $3{suffix}",
                                                   key.org_id, key.livemode, group_id)
    if row is None:
        raise not_found("QR group")
    return row


@operation("Create a QR group", "qr:write", body=QRGroupCreate, status=201, returns="QRGroup")
async def create_group(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    body = await parse_body(request, QRGroupCreate)
    destination = merge_destination({}, body.destination, "destination" in body.model_fields_set)
    db = request.app.state.db
    async with db.acquire() as conn, conn.transaction():
        group_id = new_id("grp")
        await conn.execute(
            "INSERT INTO qr_groups (id, org_id, livemode, name, description, status, destination_type,"
            " destination_url, destination_page, destination_chatbot, destination_knowledge_base)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            group_id, key.org_id, key.livemode, body.name, body.description, body.status,
            *destination_columns(destination))
        await apply_params(conn, "qr_group_url_params", "group_id", group_id, body.url_params, replace=True)
        await apply_params(conn, "qr_group_properties", "group_id", group_id, body.properties, replace=True)
        obj = group_object(await fetch_group(conn, key, group_id))
        await record_event(conn, key.org_id, key.livemode, "qr_group.created", obj)
    await request.app.state.cache.publish_group(db, group_id)
    return json_response(obj, 201)


@operation("List QR groups", "qr:read", returns="QRGroup", many=True, query=PAGE + (
    Query("status", {"enum": ["active", "inactive", "archived"]}), Query("q", {"type": "string"})))
async def list_groups(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    limit, offset = page(request)
    where, args = [OWNED], [key.org_id, key.livemode]
    if status := request.query_params.get("status"):
        args.append(status)
        where.append(f"g.status = ${len(args)}")
    if q := request.query_params.get("q"):
        args.append(f"%{q}%")
        where.append(f"g.name ILIKE ${len(args)}")
    clause = " AND ".join(where)
    db = request.app.state.db
    total = await db.fetchval(f"SELECT count(*) FROM qr_groups g WHERE {clause}", *args)
    rows = await db.fetch(f"{SELECT} WHERE {clause} ORDER BY g.created_at DESC, g.id"
                          f" LIMIT {limit} OFFSET {offset}", *args)
    return list_response([group_object(r) for r in rows], total, limit, offset)


@operation("Retrieve a QR group", "qr:read", returns="QRGroup")
async def get_group(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    return json_response(group_object(await fetch_group(request.app.state.db, key,
                                                        request.path_params["group_id"])))


@operation("Update a QR group (JSON Merge Patch)", "qr:write", body=QRGroupUpdate, returns="QRGroup")
async def update_group(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    body = await parse_body(request, QRGroupUpdate)
    fields = body.model_fields_set
    group_id = request.path_params["group_id"]
    db = request.app.state.db
    async with db.acquire() as conn, conn.transaction():
        current = await fetch_group(conn, key, group_id, lock=True)
        before = group_object(current)
        destination = merge_destination(before["destination"], body.destination, "destination" in fields)
        await conn.execute(
            "UPDATE qr_groups SET name = $2, description = $3, status = $4, destination_type = $5,"
            " destination_url = $6, destination_page = $7, destination_chatbot = $8,"
            " destination_knowledge_base = $9, version = version + 1, updated_at = now() WHERE id = $1",
            group_id,
            (body.name or "") if "name" in fields else current["name"],
            (body.description or "") if "description" in fields else current["description"],
            body.status if "status" in fields else current["status"],
            *destination_columns(destination))
        if "url_params" in fields:
            await apply_params(conn, "qr_group_url_params", "group_id", group_id, body.url_params)
        if "properties" in fields:
            await apply_params(conn, "qr_group_properties", "group_id", group_id, body.properties)
        obj = group_object(await fetch_group(conn, key, group_id))
        await record_event(conn, key.org_id, key.livemode, "qr_group.updated", obj,
                           previous_attributes(before, obj))
    await request.app.state.cache.publish_group(db, group_id)
    return json_response(obj)


@operation("Delete a QR group (its codes stay, detached)", "qr:write", status=204)
async def delete_group(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    group_id = request.path_params["group_id"]
    db = request.app.state.db
    async with db.acquire() as conn, conn.transaction():
        current = await fetch_group(conn, key, group_id, lock=True)
        await conn.execute("DELETE FROM qr_groups WHERE id = $1", group_id)
        await record_event(conn, key.org_id, key.livemode, "qr_group.deleted", group_object(current))
    await request.app.state.cache.publish_group(db, group_id)
    return Response(status_code=204)


async def _load_for_map(state: Any, conn: asyncpg.Connection[Any], key: ApiKey, group_id: str,
                        lock: bool) -> dict[str, Any]:
    return group_object(await fetch_group(conn, key, group_id, lock=lock))


async def _publish_for_map(state: Any, group_id: str) -> None:
    await state.cache.publish_group(state.db, group_id)


@operation("Mint child codes that inherit from the group", "qr:write", body=MintCodes, status=201,
           returns="QRCode", many=True, extra_errors=(402,))
async def mint_codes(request: Request) -> Response:
    """`POST /v1/qr-groups/{id}/codes`: N inheriting child codes in one transaction."""
    key = await authenticate(request, "qr:write")
    body = await parse_body(request, MintCodes)
    group_id = request.path_params["group_id"]
    settings = request.app.state.settings
    db = request.app.state.db
    async with db.acquire() as conn, conn.transaction():
        await fetch_group(conn, key, group_id)
        code_ids = await mint(conn, key, group_id, body, settings.default_domain)
        await sync_designs(conn, settings, code_ids)
        order = {code_id: n for n, code_id in enumerate(code_ids)}
        rows = sorted(await conn.fetch(f"{CODE_SELECT} WHERE c.id = ANY($1)", code_ids), key=lambda r: order[r["id"]])
        objects = await code_objects(conn, rows, settings)
        await conn.copy_records_to_table(
            "events", columns=("id", "org_id", "livemode", "type", "data"),
            records=[(new_id("evt"), key.org_id, key.livemode, "qr.created", {"object": obj}) for obj in objects])
    await request.app.state.cache.publish_codes(db, code_ids)
    return json_response({"object": "list", "data": objects, "total": len(objects)}, 201)


routes = [
    Route("/v1/qr-groups", create_group, methods=["POST"]),
    Route("/v1/qr-groups", list_groups, methods=["GET"]),
    Route("/v1/qr-groups/{group_id}", get_group, methods=["GET"]),
    Route("/v1/qr-groups/{group_id}", update_group, methods=["PATCH"]),
    Route("/v1/qr-groups/{group_id}", delete_group, methods=["DELETE"]),
    Route("/v1/qr-groups/{group_id}/codes", mint_codes, methods=["POST"]),
    *map_routes(MapOwner("/v1/qr-groups", "qr_groups", "qr_group", "group_id", "qr_group.updated", _load_for_map,
                         _publish_for_map)),
]

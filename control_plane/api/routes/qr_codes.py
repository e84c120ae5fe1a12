"""`/v1/qr-codes`: dynamic codes (a short URL re-routed forever) and static ones (content encoded directly)."""

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
from control_plane.render.content import encode_static, parse_content
from control_plane.render.design import merge_design
from control_plane.render.images import sync_design
from control_plane.services.codes import OWNED, SELECT, SORTS, code_objects
from control_plane.services.destinations import destination_columns, merge_destination
from control_plane.services.keys import ApiKey
from control_plane.services.params import apply_params
from control_plane.services.schemas import IMMUTABLE_CODE_FIELDS, QRCodeCreate, QRCodeUpdate
from control_plane.services.usage import meter_created
from shared.ids import new_id, new_slug, slug_problem
from shared.outbox import previous_attributes, record_event
from shared.problems import Problem, field_error
from shared.settings import ControlPlaneSettings

SLUG_ATTEMPTS = 8


async def fetch_code(db: asyncpg.Pool[Any] | asyncpg.Connection[Any], key: ApiKey, code_id: str,
                     *, lock: bool = False) -> asyncpg.Record:
    suffix = " FOR UPDATE OF c" if lock else ""
    row: asyncpg.Record | None = await db.fetchrow(f"{SELECT} WHERE {OWNED} AND c.id = $3{suffix}",
                                                   key.org_id, key.livemode, code_id)
    if row is None:
        raise not_found("QR code")
    return row


async def load_code(conn: asyncpg.Connection[Any], key: ApiKey, code_id: str, settings: ControlPlaneSettings,
                    *, lock: bool = False) -> dict[str, Any]:
    return (await code_objects(conn, [await fetch_code(conn, key, code_id, lock=lock)], settings))[0]


async def _check_reference(conn: asyncpg.Connection[Any], key: ApiKey, table: str, field: str,
                           value: str | None) -> None:
    if value is None:
        return
    found = await conn.fetchval(f"SELECT 1 FROM {table} WHERE id = $1 AND org_id = $2 AND livemode = $3",
                                value, key.org_id, key.livemode)
    if not found:
        raise field_error(field, f"no such {table[:-1].replace('qr_', 'QR ')}")


async def _domain_for(conn: asyncpg.Connection[Any], key: ApiKey, requested: str | None,
                      settings: ControlPlaneSettings) -> str:
    domain = (requested or settings.default_domain).lower()
    if domain == settings.default_domain:
        return domain
    if await conn.fetchval("SELECT 1 FROM domains WHERE hostname = $1 AND org_id = $2 AND livemode = $3",
                           domain, key.org_id, key.livemode):
        return domain
    raise field_error("domain", "must be the default domain or one of your domains")


async def _insert_dynamic(conn: asyncpg.Connection[Any], key: ApiKey, body: QRCodeCreate, domain: str,
                          destination: dict[str, str | None]) -> str:
    if body.slug is not None and (problem := slug_problem(body.slug)):
        raise field_error("slug", problem)
    for _ in range(SLUG_ATTEMPTS):
        code_id, slug = new_id("qr"), body.slug or new_slug()
        try:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO qr_codes (id, org_id, livemode, kind, type, name, slug, domain, group_id, status,"
                    " destination_type, destination_url, destination_page, destination_chatbot,"
                    " destination_knowledge_base, design, folder_id, tags)"
                    " VALUES ($1, $2, $3, 'dynamic', 'url', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
                    " $15, $16)",
                    code_id, key.org_id, key.livemode, body.name, slug, domain, body.group_id, body.status,
                    *destination_columns(destination), body.design, body.folder_id, body.tags)
            return code_id
        except asyncpg.UniqueViolationError:
            if body.slug is not None:
                raise Problem(409, f"The slug '{body.slug}' is already taken on {domain}.",
                              type="slug-taken") from None
    raise Problem(503, "Could not allocate a free slug; retry.", headers={"Retry-After": "1"})


STATIC_REFUSES = ("slug", "domain", "group_id", "status", "destination", "url_params", "properties")


def _static_content(type: str, content: dict[str, Any] | None) -> dict[str, Any]:
    encode_static(type, content)  # field-level 422s, and the 2 KB payload limit
    return parse_content(type, content).model_dump(mode="json")


async def _insert_static(conn: asyncpg.Connection[Any], key: ApiKey, body: QRCodeCreate) -> str:
    """A static code encodes its content itself: nothing to redirect, inherit or scan."""
    if given := [name for name in STATIC_REFUSES if getattr(body, name)]:
        raise Problem(422, "Static codes encode their content directly and do not redirect.",
                      errors=[{"field": name, "message": "not allowed on a static code"} for name in given])
    code_id = new_id("sqr")
    await conn.execute(
        "INSERT INTO qr_codes (id, org_id, livemode, kind, type, name, content, design, folder_id, tags)"
        " VALUES ($1, $2, $3, 'static', $4, $5, $6, $7, $8, $9)",
        code_id, key.org_id, key.livemode, body.type, body.name, _static_content(body.type, body.content),
        body.design, body.folder_id, body.tags)
    return code_id


async def insert_code(conn: asyncpg.Connection[Any], key: ApiKey, body: QRCodeCreate,
                      settings: ControlPlaneSettings) -> str:
    """Create a code inside the caller's transaction; returns its id."""
    await _check_reference(conn, key, "qr_groups", "group_id", body.group_id)
    await _check_reference(conn, key, "folders", "folder_id", body.folder_id)
    if body.kind == "static":
        code_id = await _insert_static(conn, key, body)
        await meter_created(conn, key, 1)
        await sync_design(conn, settings, code_id)
        return code_id
    if body.type != "url":
        raise field_error("type", "dynamic codes have type 'url'")
    if body.content is not None:
        raise field_error("content", "only static codes have content")
    destination = merge_destination({}, body.destination, False)
    domain = await _domain_for(conn, key, body.domain, settings)
    code_id = await _insert_dynamic(conn, key, body, domain, destination)
    await meter_created(conn, key, 1)
    await apply_params(conn, "qr_code_url_params", "code_id", code_id, body.url_params, replace=True)
    await apply_params(conn, "qr_code_properties", "code_id", code_id, body.properties, replace=True)
    await sync_design(conn, settings, code_id)
    return code_id


async def _create(conn: asyncpg.Connection[Any], key: ApiKey, body: QRCodeCreate,
                  settings: ControlPlaneSettings) -> tuple[str, dict[str, Any]]:
    code_id = await insert_code(conn, key, body, settings)
    obj = await load_code(conn, key, code_id, settings)
    await record_event(conn, key.org_id, key.livemode, "qr.created", obj)
    return code_id, obj


@operation("Create a QR code", "qr:write", body=QRCodeCreate, status=201, returns="QRCode", extra_errors=(402,))
async def create_code(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    body = await parse_body(request, QRCodeCreate)
    db = request.app.state.db
    async with db.acquire() as conn, conn.transaction():
        code_id, obj = await _create(conn, key, body, request.app.state.settings)
    await request.app.state.cache.publish_codes(db, [code_id])
    return json_response(obj, 201)


@operation("Find the live code with this destination URL, or create it", "qr:write", body=QRCodeCreate,
           returns="QRCode", also=(201,), extra_errors=(402,))
async def upsert_code(request: Request) -> Response:
    """Return the live dynamic code with this exact destination URL (updated), or create it."""
    key = await authenticate(request, "qr:write")
    body = await parse_body(request, QRCodeCreate)
    url = body.destination.url if body.destination else None
    if body.kind != "dynamic" or url is None:
        raise field_error("destination.url", "is required to upsert a dynamic code")
    settings = request.app.state.settings
    db = request.app.state.db
    async with db.acquire() as conn, conn.transaction():
        domain = await _domain_for(conn, key, body.domain, settings)
        # Serialise upserts of one URL: concurrent requests create exactly one code.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                           f"{key.org_id}|{key.livemode}|{domain}|{url}")
        existing = await conn.fetchval(
            "SELECT id FROM qr_codes WHERE org_id = $1 AND livemode = $2 AND domain = $3 AND deleted_at IS NULL"
            " AND kind = 'dynamic' AND md5(destination_url) = md5($4) AND destination_url = $4"
            " ORDER BY created_at LIMIT 1", key.org_id, key.livemode, domain, url)
        if existing is None:
            code_id, obj = await _create(conn, key, body, settings)
            status = 201
        else:
            if body.slug is not None and body.slug != (await fetch_code(conn, key, existing))["slug"]:
                raise field_error("slug", "cannot change after creation")
            given = body.model_fields_set - {"kind", "type", "slug", "domain"}
            patch = QRCodeUpdate.model_validate({name: getattr(body, name) for name in given})
            code_id, obj, status = existing, await _apply_update(conn, key, existing, patch, settings), 200
    await request.app.state.cache.publish_codes(db, [code_id])
    return json_response(obj, status)


def _filters(request: Request, key: ApiKey) -> tuple[str, list[Any]]:
    where, args = [OWNED], [key.org_id, key.livemode]
    params = request.query_params

    def add(condition: str, value: Any) -> None:
        args.append(value)
        where.append(condition.replace("?", f"${len(args)}"))

    for name in ("group_id", "folder_id", "status", "kind", "type"):
        if (value := params.get(name)) is not None:
            add(f"c.{name} = ?", value)
    if (tag := params.get("tag")) is not None:
        add("? = ANY(c.tags)", tag)
    if (q := params.get("q")) is not None:
        add("(c.name ILIKE ? OR c.slug ILIKE ?)", f"%{q}%")
    standalone = params.get("standalone")
    if standalone not in (None, "true", "false"):
        raise field_error("standalone", "must be true or false")
    if standalone is not None:
        where.append("c.group_id IS NULL" if standalone == "true" else "c.group_id IS NOT NULL")
    return " AND ".join(where), args


LIST_QUERY = PAGE + (
    Query("group_id", {"type": "string"}), Query("folder_id", {"type": "string"}), Query("tag", {"type": "string"}),
    Query("status", {"enum": ["active", "inactive", "archived"]}), Query("kind", {"enum": ["dynamic", "static"]}),
    Query("type", {"type": "string"}), Query("standalone", {"enum": ["true", "false"]}),
    Query("q", {"type": "string"}), Query("sort", {"enum": list(SORTS)}),
)


@operation("List QR codes", "qr:read", returns="QRCode", many=True, query=LIST_QUERY)
async def list_codes(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    limit, offset = page(request)
    sort = request.query_params.get("sort", "-created_at")
    if sort not in SORTS:
        raise field_error("sort", f"must be one of {', '.join(SORTS)}")
    clause, args = _filters(request, key)
    db = request.app.state.db
    total = await db.fetchval(f"SELECT count(*) FROM qr_codes c WHERE {clause}", *args)
    rows = await db.fetch(f"{SELECT} WHERE {clause} ORDER BY {SORTS[sort]} LIMIT {limit} OFFSET {offset}", *args)
    return list_response(await code_objects(db, rows, request.app.state.settings), total, limit, offset)


@operation("Retrieve a QR code", "qr:read", returns="QRCode")
async def get_code(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    async with request.app.state.db.acquire() as conn:
        return json_response(await load_code(conn, key, request.path_params["code_id"], request.app.state.settings))


async def _apply_update(conn: asyncpg.Connection[Any], key: ApiKey, code_id: str, body: QRCodeUpdate,
                        settings: ControlPlaneSettings) -> dict[str, Any]:
    """Merge-patch a code inside the caller's transaction; records `qr.updated`; returns the new object."""
    fields = body.model_fields_set
    current = await fetch_code(conn, key, code_id, lock=True)
    before = (await code_objects(conn, [current], settings))[0]
    if "group_id" in fields:
        await _check_reference(conn, key, "qr_groups", "group_id", body.group_id)
    if "folder_id" in fields:
        await _check_reference(conn, key, "folders", "folder_id", body.folder_id)
    content = current["content"]
    if current["kind"] == "static":
        if given := [name for name in STATIC_REFUSES if name in fields]:
            raise Problem(422, "Static codes encode their content directly and do not redirect.",
                          errors=[{"field": name, "message": "not allowed on a static code"} for name in given])
        if "content" in fields:
            content = _static_content(current["type"], body.content)
    elif "content" in fields:
        raise field_error("content", "only static codes have content")
    destination = merge_destination(before["destination"], body.destination, "destination" in fields)

    def pick(name: str, default: Any = None) -> Any:
        if name not in fields:
            return current[name]
        value = getattr(body, name)
        return default if value is None else value

    await conn.execute(
        "UPDATE qr_codes SET name = $2, group_id = $3, status = $4, destination_type = $5,"
        " destination_url = $6, destination_page = $7, destination_chatbot = $8,"
        " destination_knowledge_base = $9, design = $10, folder_id = $11, tags = $12, content = $13,"
        " version = version + 1, updated_at = now() WHERE id = $1",
        code_id, pick("name", ""), pick("group_id"), pick("status"), *destination_columns(destination),
        merge_design(current["design"], body.design) if "design" in fields else current["design"],
        pick("folder_id"), pick("tags", []), content)
    if "design" in fields or "content" in fields:  # a new payload must be proven scannable too
        await sync_design(conn, settings, code_id)
    if "url_params" in fields:
        await apply_params(conn, "qr_code_url_params", "code_id", code_id, body.url_params)
    if "properties" in fields:
        await apply_params(conn, "qr_code_properties", "code_id", code_id, body.properties)
    obj = await load_code(conn, key, code_id, settings)
    await record_event(conn, key.org_id, key.livemode, "qr.updated", obj, previous_attributes(before, obj))
    return obj


@operation("Update a QR code (JSON Merge Patch)", "qr:write", body=QRCodeUpdate, returns="QRCode")
async def update_code(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    body = await parse_body(request, QRCodeUpdate, immutable=IMMUTABLE_CODE_FIELDS)
    code_id = request.path_params["code_id"]
    db = request.app.state.db
    async with db.acquire() as conn, conn.transaction():
        obj = await _apply_update(conn, key, code_id, body, request.app.state.settings)
    await request.app.state.cache.publish_codes(db, [code_id])
    return json_response(obj)


@operation("Delete a QR code (soft: the edge answers 410)", "qr:write", status=204)
async def delete_code(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    code_id = request.path_params["code_id"]
    settings = request.app.state.settings
    db = request.app.state.db
    async with db.acquire() as conn, conn.transaction():
        current = await fetch_code(conn, key, code_id, lock=True)
        obj = (await code_objects(conn, [current], settings))[0]
        await conn.execute("UPDATE qr_codes SET deleted_at = now(), version = version + 1, updated_at = now()"
                           " WHERE id = $1", code_id)
        await record_event(conn, key.org_id, key.livemode, "qr.deleted", obj)
    await request.app.state.cache.publish_codes(db, [code_id])
    return Response(status_code=204)


async def _load_for_map(state: Any, conn: asyncpg.Connection[Any], key: ApiKey, code_id: str,
                        lock: bool) -> dict[str, Any]:
    return await load_code(conn, key, code_id, state.settings, lock=lock)


async def _publish_for_map(state: Any, code_id: str) -> None:
    await state.cache.publish_codes(state.db, [code_id])


routes = [
    Route("/v1/qr-codes", create_code, methods=["POST"]),
    Route("/v1/qr-codes/upsert", upsert_code, methods=["POST"]),
    Route("/v1/qr-codes", list_codes, methods=["GET"]),
    Route("/v1/qr-codes/{code_id}", get_code, methods=["GET"]),
    Route("/v1/qr-codes/{code_id}", update_code, methods=["PATCH"]),
    Route("/v1/qr-codes/{code_id}", delete_code, methods=["DELETE"]),
    *map_routes(MapOwner("/v1/qr-codes", "qr_codes", "qr_code", "code_id", "qr.updated", _load_for_map,
                         _publish_for_map)),
]

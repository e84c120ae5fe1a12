"""QR codes: dynamic ones (a short URL re-routed forever) and static ones (content encoded directly).

Every change runs in one transaction with its event, then writes the edge rows through to Redis.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Literal

import asyncpg
from typing_extensions import TypedDict

from control_plane.render.content import encode_static, parse_content
from control_plane.render.design import merge_design
from control_plane.render.images import image_url, payload_for, preview_url, sync_design
from control_plane.render.logo import prefetch_logos
from control_plane.services import routing_fields
from control_plane.services.context import Queryable, ServiceContext
from control_plane.services.destinations import (
    DestinationPublic,
    destination_columns,
    destination_object,
    merge_destination,
)
from control_plane.services.domains import canonical_domain
from control_plane.services.keys import ApiKey
from control_plane.services.listing import LIKE_ESCAPE, Listing, contains_pattern
from control_plane.services.params import apply_params, pairs_to_dict
from control_plane.services.routing_fields import ResolvedRoutingPublic, RoutingPublic, resolved_routing, routing_object
from control_plane.services.schemas import (
    CodeType,
    QRCodeBulkUpdate,
    QRCodeCreate,
    QRCodeListQuery,
    QRCodeUpdate,
    Status,
)
from control_plane.services.usage import meter_created
from control_plane.services.versions import check_version
from shared.edge_rows import CODE_COLUMNS, code_row, load_groups
from shared.ids import new_id, new_slug, slug_problem
from shared.outbox import previous_attributes, record_event
from shared.problems import Problem, field_error, not_found
from shared.resolve import resolve
from shared.rows import GroupRow
from shared.settings import ControlPlaneSettings
from shared.times import timestamp

SELECT = f"""
SELECT {CODE_COLUMNS}, c.kind, c.type, c.name, c.slug, c.domain, c.content, c.design, c.folder_id, c.tags,
    c.scan_count, c.created_at, c.updated_at
FROM qr_codes c"""
OWNED = "c.org_id = $1 AND c.livemode = $2 AND c.deleted_at IS NULL"
SORTS = {"created_at": "c.created_at, c.id", "-created_at": "c.created_at DESC, c.id DESC",
         "name": "c.name, c.id", "-scan_count": "c.scan_count DESC, c.id"}
SLUG_ATTEMPTS = 8
STATIC_REFUSES = ("slug", "domain", "group_id", "status", "destination", "url_params", "properties", "rules",
                  "split", "valid_from", "valid_until", "max_scans", "expired_destination", "password")


class ResolvedPublic(ResolvedRoutingPublic):
    """What a scan without visitor params gets now, exactly as the edge resolves it."""

    status: Status
    destination: dict[str, str | None] | None  # the type and its companion field; None when unconfigured
    source: Literal["code", "group"] | None
    url: str | None  # the redirect target; None unless the code redirects


class QRCodePublic(RoutingPublic):
    id: str
    object: Literal["qr_code"]
    livemode: bool
    version: int
    kind: Literal["dynamic", "static"]
    type: CodeType
    name: str
    slug: str | None
    domain: str | None
    short_url: str | None
    group_id: str | None
    status: Status | None
    destination: DestinationPublic
    content: dict[str, Any] | None
    url_params: dict[str, str]
    properties: dict[str, str]
    design: dict[str, Any] | None
    folder_id: str | None
    tags: list[str]
    resolved: ResolvedPublic | None
    image_url: str
    download_url: str
    preview_url: str
    scan_count: int | None
    created_at: str
    updated_at: str


def resolved_object(row: asyncpg.Record, group: GroupRow | None, settings: ControlPlaneSettings) -> ResolvedPublic:
    code = code_row(row)
    if group is not None and group.id != code.group_id:
        group = None
    resolution = resolve(code, group, settings.templates)
    return {
        "status": resolution.status,  # type: ignore[typeddict-item]
        "destination": resolution.destination.compact() if resolution.destination else None,
        "source": resolution.source,  # type: ignore[typeddict-item]
        "url": resolution.location.location if resolution.location else None,
        **resolved_routing(code, group),
    }


def code_object(row: asyncpg.Record, group: GroupRow | None, settings: ControlPlaneSettings) -> QRCodePublic:
    dynamic = row["kind"] == "dynamic"
    payload = payload_for(row, settings)
    return {
        "id": row["id"], "object": "qr_code", "livemode": row["livemode"], "version": row["version"],
        "kind": row["kind"],
        "type": row["type"], "name": row["name"], "slug": row["slug"], "domain": row["domain"],
        "short_url": f"{settings.public_scheme}://{row['domain']}/{row['slug']}" if dynamic else None,
        "group_id": row["group_id"], "status": row["status"], "destination": destination_object(row),
        "content": row["content"], "url_params": pairs_to_dict(row["url_params"]),
        "properties": pairs_to_dict(row["properties"]), "design": row["design"], "folder_id": row["folder_id"],
        "tags": row["tags"], **routing_object(row),
        "resolved": resolved_object(row, group, settings) if dynamic else None,
        "image_url": image_url(settings, payload, row["design"]),
        "download_url": f"/v1/qr-codes/{row['id']}/download",
        "preview_url": preview_url(settings, payload, row["design"]),
        "scan_count": row["scan_count"] if dynamic else None,
        "created_at": timestamp(row["created_at"]), "updated_at": timestamp(row["updated_at"]),
    }


async def code_objects(db: Queryable, rows: list[asyncpg.Record],
                       settings: ControlPlaneSettings) -> list[QRCodePublic]:
    groups = await load_groups(db, sorted({r["group_id"] for r in rows if r["group_id"]}))
    return [code_object(r, groups.get(r["group_id"]), settings) for r in rows]


async def fetch_code(db: Queryable, key: ApiKey, code_id: str, *, lock: bool = False) -> asyncpg.Record:
    """The caller's live (not deleted) code; 404 for anyone else's, as if it did not exist."""
    suffix = " FOR UPDATE OF c" if lock else ""
    row: asyncpg.Record | None = await db.fetchrow(f"{SELECT} WHERE {OWNED} AND c.id = $3{suffix}",
                                                   key.org_id, key.livemode, code_id)
    if row is None:
        raise not_found("QR code")
    return row


async def load_code(conn: Queryable, key: ApiKey, code_id: str, settings: ControlPlaneSettings,
                    *, lock: bool = False) -> QRCodePublic:
    return (await code_objects(conn, [await fetch_code(conn, key, code_id, lock=lock)], settings))[0]


async def _check_reference(conn: asyncpg.Connection[Any], key: ApiKey, table: str, field: str,
                           value: str | None) -> None:
    if value is None:
        return
    # FOR KEY SHARE: a delete of the row waits for this transaction, so the code never refers to a row gone.
    found = await conn.fetchval(f"SELECT 1 FROM {table} WHERE id = $1 AND org_id = $2 AND livemode = $3"
                                " FOR KEY SHARE", value, key.org_id, key.livemode)
    if not found:
        raise field_error(field, f"no such {table[:-1].replace('qr_', 'QR ')}")


async def _domain_for(conn: asyncpg.Connection[Any], key: ApiKey, requested: str | None,
                      settings: ControlPlaneSettings) -> str:
    given = (requested or settings.default_domain).lower()
    try:  # the form domains are stored in: `bücher.example.` names `xn--bcher-kva.example` (docs/api.md §2.3)
        domain = canonical_domain(given)
    except ValueError:  # an address (a default domain may be one), or a domain registered before IDNA 2008 was
        domain = given  # checked (`xn--i-7iq.ws`): compared as given, as it is stored
    if domain == settings.default_domain:
        return domain
    # FOR KEY SHARE: a delete of the domain waits, then counts this code (409); nothing may sit on a hostname
    # that is free for another organisation to register.
    if await conn.fetchval("SELECT 1 FROM domains WHERE hostname = $1 AND org_id = $2 AND livemode = $3"
                           " FOR KEY SHARE", domain, key.org_id, key.livemode):
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


def refuse_on_static(given: list[str]) -> None:
    if given:
        raise Problem(422, "Static codes encode their content directly and do not redirect.",
                      errors=[{"field": name, "message": "not allowed on a static code"} for name in given])


def _static_content(type: str, content: dict[str, Any] | None) -> dict[str, Any]:
    encode_static(type, content)  # field-level 422s, and the 2 KB payload limit
    return parse_content(type, content).model_dump(mode="json")


async def _insert_static(conn: asyncpg.Connection[Any], key: ApiKey, body: QRCodeCreate) -> str:
    """A static code encodes its content itself: nothing to redirect, inherit or scan."""
    refuse_on_static([name for name in STATIC_REFUSES if getattr(body, name)])
    code_id = new_id("sqr")
    await conn.execute(
        "INSERT INTO qr_codes (id, org_id, livemode, kind, type, name, content, design, folder_id, tags)"
        " VALUES ($1, $2, $3, 'static', $4, $5, $6, $7, $8, $9)",
        code_id, key.org_id, key.livemode, body.type, body.name, _static_content(body.type, body.content),
        body.design, body.folder_id, body.tags)
    return code_id


async def insert_code(conn: asyncpg.Connection[Any], key: ApiKey, body: QRCodeCreate,
                      settings: ControlPlaneSettings) -> str:
    """Create a code inside the caller's transaction (metered, design checked); returns its id."""
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
    destination = merge_destination({}, body.destination, False, infer_type=True)
    domain = await _domain_for(conn, key, body.domain, settings)
    code_id = await _insert_dynamic(conn, key, body, domain, destination)
    if routing_fields.touched(body):
        values = routing_fields.routing_values(body, None, await routing_fields.password_hash(body))
        await routing_fields.store(conn, "qr_codes", code_id, values)
    await meter_created(conn, key, 1)
    await apply_params(conn, "qr_code_url_params", "code_id", code_id, body.url_params, replace=True)
    await apply_params(conn, "qr_code_properties", "code_id", code_id, body.properties, replace=True)
    await sync_design(conn, settings, code_id)
    return code_id


async def _create_in(conn: asyncpg.Connection[Any], key: ApiKey, body: QRCodeCreate,
                     settings: ControlPlaneSettings) -> tuple[str, QRCodePublic]:
    code_id = await insert_code(conn, key, body, settings)
    obj = await load_code(conn, key, code_id, settings)
    await record_event(conn, key.org_id, key.livemode, "qr.created", obj)
    return code_id, obj


async def create_code(ctx: ServiceContext, key: ApiKey, body: QRCodeCreate) -> QRCodePublic:
    await prefetch_logos([body.design], ctx.settings.outbound)  # no network wait inside the transaction
    async with ctx.transaction() as conn:
        code_id, obj = await _create_in(conn, key, body, ctx.settings)
    await ctx.cache.publish_codes(ctx.db, [code_id])
    return obj


async def upsert_code(ctx: ServiceContext, key: ApiKey, body: QRCodeCreate) -> tuple[QRCodePublic, bool]:
    """The live dynamic code with this exact destination URL (updated with the other fields given), or a new
    one; the flag says whether it was created."""
    url = body.destination.url if body.destination else None
    if body.kind != "dynamic" or url is None:
        raise field_error("destination.url", "is required to upsert a dynamic code")
    await prefetch_logos([body.design], ctx.settings.outbound)  # no network wait inside the transaction
    async with ctx.transaction() as conn:
        domain = await _domain_for(conn, key, body.domain, ctx.settings)
        # Serialise upserts of one URL: concurrent requests create exactly one code.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                           f"{key.org_id}|{key.livemode}|{domain}|{url}")
        # Only a code whose destination is this URL: one of type page (or inheriting) that kept the URL
        # from an earlier destination goes elsewhere, and upsert then creates the code that goes here.
        existing = await conn.fetchval(
            "SELECT id FROM qr_codes WHERE org_id = $1 AND livemode = $2 AND domain = $3 AND deleted_at IS NULL"
            " AND kind = 'dynamic' AND md5(destination_url) = md5($4) AND destination_url = $4"
            " AND destination_type = 'url' ORDER BY created_at LIMIT 1", key.org_id, key.livemode, domain, url)
        if existing is None:
            code_id, obj = await _create_in(conn, key, body, ctx.settings)
        else:
            if body.slug is not None and body.slug != (await fetch_code(conn, key, existing))["slug"]:
                raise field_error("slug", "cannot change after creation")
            # The destination is the key it was found by: only the other fields update it (docs/api.md §4.1).
            given = body.model_fields_set - {"kind", "type", "slug", "domain", "destination"}
            patch = QRCodeUpdate.model_validate({name: getattr(body, name) for name in given})
            code_id, (obj, changed) = existing, await _update_in(conn, key, existing, patch, ctx.settings)
    if existing is None or changed:
        await ctx.cache.publish_codes(ctx.db, [code_id])
    return obj, existing is None


def _filters(query: QRCodeListQuery, key: ApiKey) -> tuple[str, list[Any]]:
    where, args = [OWNED], [key.org_id, key.livemode]

    def add(condition: str, value: Any) -> None:
        args.append(value)
        where.append(condition.replace("?", f"${len(args)}"))

    for name in ("group_id", "folder_id", "status", "kind", "type"):
        if (value := getattr(query, name)) is not None:
            add(f"c.{name} = ?", value)
    if query.tag is not None:
        add("? = ANY(c.tags)", query.tag)
    if query.q is not None:
        add(f"(c.name ILIKE ? {LIKE_ESCAPE} OR c.slug ILIKE ? {LIKE_ESCAPE})", contains_pattern(query.q))
    if query.standalone is not None:
        where.append("c.group_id IS NULL" if query.standalone == "true" else "c.group_id IS NOT NULL")
    return " AND ".join(where), args


async def list_codes(ctx: ServiceContext, key: ApiKey, query: QRCodeListQuery) -> Listing[QRCodePublic]:
    clause, args = _filters(query, key)
    total = await ctx.db.fetchval(f"SELECT count(*) FROM qr_codes c WHERE {clause}", *args)
    rows = await ctx.db.fetch(f"{SELECT} WHERE {clause} ORDER BY {SORTS[query.sort]}"
                              f" LIMIT {query.limit} OFFSET {query.offset}", *args)
    return Listing(await code_objects(ctx.db, rows, ctx.settings), total, query.limit, query.offset)


async def get_code(ctx: ServiceContext, key: ApiKey, code_id: str) -> QRCodePublic:
    return await load_code(ctx.db, key, code_id, ctx.settings)


# Columns a patch sets as given (`null` stores the default shown), so that a patch of only these changes the
# code exactly when a value differs from the row's.
PLAIN_COLUMNS: dict[str, Any] = {"name": "", "tags": [], "status": None, "group_id": None, "folder_id": None}


def _or_default(value: Any, default: Any) -> Any:
    return default if value is None else value


async def _update_in(conn: asyncpg.Connection[Any], key: ApiKey, code_id: str, body: QRCodeUpdate,
                     settings: ControlPlaneSettings,
                     if_match: Collection[int] | None = None) -> tuple[QRCodePublic, bool]:
    """Merge-patch a code inside the caller's transaction; records `qr.updated`; returns the new object and
    whether it changed. A patch that changes nothing writes nothing (its writes are undone to a savepoint):
    the same `version`, no event (docs/api.md §4.1)."""
    current = await fetch_code(conn, key, code_id, lock=True)
    check_version(current, if_match, "QR code")
    before = (await code_objects(conn, [current], settings))[0]
    fields = body.model_fields_set
    if fields <= PLAIN_COLUMNS.keys():
        # Only plain columns (all a bulk update sets): compared directly, with no savepoint — a bulk update of
        # 1,000 codes must not open 1,000 subtransactions.
        if all(current[name] == _or_default(getattr(body, name), PLAIN_COLUMNS[name]) for name in fields):
            return before, False
        obj = await _write_patch(conn, key, code_id, body, settings, current, before)
    else:
        try:
            async with conn.transaction():
                obj = await _write_patch(conn, key, code_id, body, settings, current, before)
                if routing_fields.changes_nothing(before, obj, body):
                    raise routing_fields.Unchanged
        except routing_fields.Unchanged:
            return before, False
    await record_event(conn, key.org_id, key.livemode, "qr.updated", obj, previous_attributes(before, obj))
    return obj, True


async def _write_patch(conn: asyncpg.Connection[Any], key: ApiKey, code_id: str, body: QRCodeUpdate,
                       settings: ControlPlaneSettings, current: asyncpg.Record,
                       before: QRCodePublic) -> QRCodePublic:
    fields = body.model_fields_set
    if "group_id" in fields:
        await _check_reference(conn, key, "qr_groups", "group_id", body.group_id)
    if "folder_id" in fields:
        await _check_reference(conn, key, "folders", "folder_id", body.folder_id)
    content = current["content"]
    if current["kind"] == "static":
        # `null` clears, and a static code has none of these to clear: only a value is refused.
        refuse_on_static([name for name in STATIC_REFUSES if name in fields and getattr(body, name) is not None])
        if "content" in fields:
            content = _static_content(current["type"], body.content)
    elif body.content is not None:
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
    if routing_fields.touched(body):
        values = routing_fields.routing_values(body, current, await routing_fields.password_hash(body))
        await routing_fields.store(conn, "qr_codes", code_id, values)
    await routing_fields.after_code_change(conn, code_id, fields)
    if "design" in fields or "content" in fields:  # a new payload must be proven scannable too
        await sync_design(conn, settings, code_id)
    if "url_params" in fields:
        await apply_params(conn, "qr_code_url_params", "code_id", code_id, body.url_params)
    if "properties" in fields:
        await apply_params(conn, "qr_code_properties", "code_id", code_id, body.properties)
    return await load_code(conn, key, code_id, settings)


def _replaces_logo(body: QRCodeUpdate) -> bool:
    """Whether the patch leaves nothing of the stored logo: no design, no logo, or a logo with a URL of its own
    (a merge patch of `{"logo": {"scale": 0.3}}` keeps the stored URL)."""
    if "design" not in body.model_fields_set:
        return False
    if body.design is None:
        return True
    logo = body.design.get("logo", {})
    return logo is None or (isinstance(logo, dict) and "url" in logo)


async def update_code(ctx: ServiceContext, key: ApiKey, code_id: str, body: QRCodeUpdate, *,
                      if_match: Collection[int] | None = None) -> QRCodePublic:
    """JSON Merge Patch of a code; `if_match`: 412 unless the code is at one of these versions."""
    if "design" in body.model_fields_set or "content" in body.model_fields_set:
        # The design is checked again, logo included: fetch both logos before locking the row — the stored one
        # only if it stays (the patch names no logo of its own), and only the caller's own code's: another
        # organisation's code is a 404 below, never a fetch of its logo nor a 422 about it.
        stored = None
        if not _replaces_logo(body):
            stored = await ctx.db.fetchval(
                "SELECT design FROM qr_codes WHERE id = $1 AND org_id = $2 AND livemode = $3 AND deleted_at IS NULL",
                code_id, key.org_id, key.livemode)
        await prefetch_logos([stored, body.design], ctx.settings.outbound)
    async with ctx.transaction() as conn:
        obj, changed = await _update_in(conn, key, code_id, body, ctx.settings, if_match)
    if changed:
        await ctx.cache.publish_codes(ctx.db, [code_id])
    return obj


async def delete_code(ctx: ServiceContext, key: ApiKey, code_id: str, *,
                      if_match: Collection[int] | None = None) -> None:
    """Soft delete: the row stays for analytics; lists and reads stop showing it, the edge answers 410."""
    async with ctx.transaction() as conn:
        current = await fetch_code(conn, key, code_id, lock=True)
        check_version(current, if_match, "QR code")
        obj = (await code_objects(conn, [current], ctx.settings))[0]
        await conn.execute("UPDATE qr_codes SET deleted_at = now(), version = version + 1, updated_at = now()"
                           " WHERE id = $1", code_id)
        await record_event(conn, key.org_id, key.livemode, "qr.deleted", obj)
    await ctx.cache.publish_codes(ctx.db, [code_id])


class BulkUpdatePublic(TypedDict):
    updated: int


async def _lock_for_bulk(conn: asyncpg.Connection[Any], key: ApiKey, code_ids: list[str],
                         new_group: str | None) -> None:
    """Lock up front, in the order every writer takes them, all that a bulk update will lock: first the codes
    by id, then the groups involved (as a PATCH locks its code, then the group it leaves or joins; as a group
    or folder delete locks its codes by id, then the group or folder). Locking each code in request order
    instead deadlocks two bulk updates naming the same codes in other orders; locking the groups first, a
    bulk update and a group delete (docs/api.md, "Lost races")."""
    await conn.execute(
        "SELECT 1 FROM qr_codes c WHERE c.id = ANY($3) AND " + OWNED + " ORDER BY c.id FOR UPDATE",
        key.org_id, key.livemode, code_ids)
    await conn.execute(
        "SELECT 1 FROM qr_groups WHERE org_id = $1 AND livemode = $2"
        " AND (id = $4 OR id IN (SELECT group_id FROM qr_codes WHERE id = ANY($3)))"
        " ORDER BY id FOR KEY SHARE", key.org_id, key.livemode, code_ids, new_group)


async def bulk_update(ctx: ServiceContext, key: ApiKey, body: QRCodeBulkUpdate) -> BulkUpdatePublic:
    """Every named code or none: one transaction, each code patched (and its `qr.updated` recorded) as a PATCH
    of the same fields would; an unknown id or a refused change rolls all of them back."""
    changes = QRCodeUpdate.model_validate(body.set.model_dump(exclude_unset=True))
    if not changes.model_fields_set:
        raise field_error("set", "must set at least one of tags, folder_id, status, group_id")
    code_ids = list(dict.fromkeys(body.ids))
    async with ctx.transaction() as conn:
        await _lock_for_bulk(conn, key, code_ids, changes.group_id)
        changed = [code_id for code_id in code_ids if (await _update_in(conn, key, code_id, changes, ctx.settings))[1]]
    if changed:
        await ctx.cache.publish_codes(ctx.db, changed)
    return {"updated": len(code_ids)}

"""QR groups: a print run whose codes inherit its destination, status and params at scan time.

Changing a group writes one edge row, whatever the number of its codes.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Literal

import asyncpg

from control_plane.render.images import sync_designs
from control_plane.services import routing_fields
from control_plane.services.context import Queryable, ServiceContext
from control_plane.services.destinations import (
    DestinationPublic,
    destination_columns,
    destination_object,
    merge_destination,
)
from control_plane.services.keys import ApiKey
from control_plane.services.listing import LIKE_ESCAPE, Choice, Listing, contains_pattern
from control_plane.services.mint import mint
from control_plane.services.params import apply_params, pairs_to_dict
from control_plane.services.qr_codes import SELECT as CODE_SELECT
from control_plane.services.qr_codes import QRCodePublic, code_objects
from control_plane.services.routing_fields import RoutingPublic, routing_object
from control_plane.services.schemas import MintCodes, QRGroupCreate, QRGroupListQuery, QRGroupUpdate, Status
from control_plane.services.versions import check_version
from shared.edge_rows import GROUP_COLUMNS
from shared.ids import new_id
from shared.outbox import previous_attributes, record_event
from shared.problems import not_found
from shared.times import timestamp

SELECT = f"""
SELECT {GROUP_COLUMNS}, g.org_id, g.livemode, g.name, g.description, g.created_at, g.updated_at, g.code_count
FROM qr_groups g"""
OWNED = "g.org_id = $1 AND g.livemode = $2"
# A deleted group's codes, deleted ones included (the edges keep their rows to answer 410), detached with a new
# version before `ON DELETE SET NULL` would detach them without one: else Redis keeps the old group at the same
# version and the cache audit takes the row for a planted one.
LOCK_CODES = "SELECT 1 FROM qr_codes WHERE group_id = $1 ORDER BY id FOR UPDATE"
# The group fields whose change updates some of its codes' rows (routing_fields.after_group_change).
CODE_FIELDS = {"max_scans", "valid_until"}
DETACH_CODES = """UPDATE qr_codes SET group_id = NULL, version = version + 1, updated_at = now()
WHERE group_id = $1 RETURNING id"""


class QRGroupPublic(RoutingPublic):
    id: str
    object: Literal["qr_group"]
    livemode: bool
    version: int
    name: str
    description: str
    status: Status | None
    destination: DestinationPublic
    url_params: dict[str, str]
    properties: dict[str, str]
    code_count: int
    created_at: str
    updated_at: str


def group_object(row: asyncpg.Record) -> QRGroupPublic:
    return {
        "id": row["id"], "object": "qr_group", "livemode": row["livemode"], "version": row["version"],
        "name": row["name"],
        "description": row["description"], "status": row["status"],
        "destination": destination_object(row), "url_params": pairs_to_dict(row["url_params"]),
        "properties": pairs_to_dict(row["properties"]), **routing_object(row), "code_count": row["code_count"],
        "created_at": timestamp(row["created_at"]), "updated_at": timestamp(row["updated_at"]),
    }


async def fetch_group(db: Queryable, key: ApiKey, group_id: str, *, lock: bool = False,
                      keep: bool = False) -> asyncpg.Record:
    """The caller's group; 404 for anyone else's, as if it did not exist. `lock`: for a change of the group;
    `keep`: it is not deleted before the caller's transaction ends (a delete waits), for codes put in it."""
    suffix = " FOR UPDATE OF g" if lock else " FOR KEY SHARE OF g" if keep else ""
    row: asyncpg.Record | None = await db.fetchrow(f"{SELECT} WHERE {OWNED} AND g.id = $3{suffix}",
                                                   key.org_id, key.livemode, group_id)
    if row is None:
        raise not_found("QR group")
    return row


async def load_group(db: Queryable, key: ApiKey, group_id: str, *, lock: bool = False) -> QRGroupPublic:
    return group_object(await fetch_group(db, key, group_id, lock=lock))


async def create_group(ctx: ServiceContext, key: ApiKey, body: QRGroupCreate) -> QRGroupPublic:
    destination = merge_destination({}, body.destination, "destination" in body.model_fields_set,
                                    infer_type=True)
    async with ctx.transaction() as conn:
        group_id = new_id("grp")
        await conn.execute(
            "INSERT INTO qr_groups (id, org_id, livemode, name, description, status, destination_type,"
            " destination_url, destination_page, destination_chatbot, destination_knowledge_base)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            group_id, key.org_id, key.livemode, body.name, body.description, body.status,
            *destination_columns(destination))
        if routing_fields.touched(body):
            values = routing_fields.routing_values(body, None, await routing_fields.password_hash(body))
            await routing_fields.store(conn, "qr_groups", group_id, values)
        await apply_params(conn, "qr_group_url_params", "group_id", group_id, body.url_params, replace=True)
        await apply_params(conn, "qr_group_properties", "group_id", group_id, body.properties, replace=True)
        obj = await load_group(conn, key, group_id)
        await record_event(conn, key.org_id, key.livemode, "qr_group.created", obj)
    await ctx.cache.publish_group(ctx.db, group_id)
    return obj


async def list_groups(ctx: ServiceContext, key: ApiKey, query: QRGroupListQuery) -> Listing[QRGroupPublic]:
    where, args = [OWNED], [key.org_id, key.livemode]
    if query.status is not None:
        args.append(query.status)
        where.append(f"g.status = ${len(args)}")
    if query.q:
        args.append(contains_pattern(query.q))
        where.append(f"g.name ILIKE ${len(args)} {LIKE_ESCAPE}")
    clause = " AND ".join(where)
    total = await ctx.db.fetchval(f"SELECT count(*) FROM qr_groups g WHERE {clause}", *args)
    rows = await ctx.db.fetch(f"{SELECT} WHERE {clause} ORDER BY g.created_at DESC, g.id"
                              f" LIMIT {query.limit} OFFSET {query.offset}", *args)
    return Listing([group_object(r) for r in rows], total, query.limit, query.offset)


class GroupChoice(Choice):
    code_count: int


async def group_choices(ctx: ServiceContext, key: ApiKey) -> list[GroupChoice]:
    """Every group of the caller's organisation and mode, by name: a picker that left one out would let a form
    that holds it save another (docs/dashboard.md)."""
    rows = await ctx.db.fetch(f"SELECT g.id, g.name, g.code_count FROM qr_groups g WHERE {OWNED}"
                              " ORDER BY lower(g.name), g.id", key.org_id, key.livemode)
    return [{"id": r["id"], "name": r["name"], "code_count": r["code_count"]} for r in rows]


async def get_group(ctx: ServiceContext, key: ApiKey, group_id: str) -> QRGroupPublic:
    return await load_group(ctx.db, key, group_id)


async def update_group(ctx: ServiceContext, key: ApiKey, group_id: str, body: QRGroupUpdate, *,
                       if_match: Collection[int] | None = None) -> QRGroupPublic:
    """JSON Merge Patch of a group; records `qr_group.updated`; `if_match` as for codes. A patch that changes
    nothing writes nothing (its writes are undone to a savepoint): the same `version`, no event, nothing
    published (docs/api.md §4.1)."""
    async with ctx.transaction() as conn:
        if body.model_fields_set & CODE_FIELDS:  # it changes codes too: their locks first, as delete_group takes them
            await fetch_group(conn, key, group_id)  # 404 before taking any lock
            await conn.execute(LOCK_CODES, group_id)
        current = await fetch_group(conn, key, group_id, lock=True)
        check_version(current, if_match, "QR group")
        before = group_object(current)
        try:
            async with conn.transaction():
                obj, limits_changed = await _write_patch(conn, key, group_id, body, current, before)
                if routing_fields.changes_nothing(before, obj, body):
                    raise routing_fields.Unchanged
        except routing_fields.Unchanged:
            return before
        await record_event(conn, key.org_id, key.livemode, "qr_group.updated", obj,
                           previous_attributes(before, obj))
        await _announce_limits(conn, key, limits_changed, ctx)
    await ctx.cache.publish_group(ctx.db, group_id)
    if limits_changed:
        await ctx.cache.publish_codes(ctx.db, limits_changed)
    return obj


async def _write_patch(conn: asyncpg.Connection[Any], key: ApiKey, group_id: str, body: QRGroupUpdate,
                       current: asyncpg.Record, before: QRGroupPublic) -> tuple[QRGroupPublic, list[str]]:
    """The patch's writes; returns the new object and the codes whose `max_scans` mark it changed."""
    fields = body.model_fields_set
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
    if routing_fields.touched(body):
        values = routing_fields.routing_values(body, current, await routing_fields.password_hash(body))
        await routing_fields.store(conn, "qr_groups", group_id, values)
    limits_changed = await routing_fields.after_group_change(conn, group_id, fields)
    if "url_params" in fields:
        await apply_params(conn, "qr_group_url_params", "group_id", group_id, body.url_params)
    if "properties" in fields:
        await apply_params(conn, "qr_group_properties", "group_id", group_id, body.properties)
    return await load_group(conn, key, group_id), limits_changed


async def _announce_limits(conn: asyncpg.Connection[Any], key: ApiKey, code_ids: list[str],
                           ctx: ServiceContext) -> None:
    """A `qr.updated` for each code the group's new `max_scans` marked or unmarked (a new `version`): the
    cache sync re-applies the outbox, so a write-through of them that is lost is repaired (docs/freshness.md)."""
    if not code_ids:
        return
    rows = await conn.fetch(f"{CODE_SELECT} WHERE c.id = ANY($1) ORDER BY c.id", code_ids)
    for obj in await code_objects(conn, rows, ctx.settings):
        await record_event(conn, key.org_id, key.livemode, "qr.updated", obj, {})


async def delete_group(ctx: ServiceContext, key: ApiKey, group_id: str, *,
                       if_match: Collection[int] | None = None) -> None:
    """Its codes stay, detached (`group_id` null); one `qr_group.deleted` event says so for all of them.

    Detaching changes each code as any update does — a new `version`, its row written through to Redis — so
    Redis's rows follow the database (the cache audit never takes a detached code's row for a planted one).
    No event names the codes: the cache sync re-applies them by their new version when this write-through is
    lost (docs/freshness.md, "The cache sync's cursor")."""
    async with ctx.transaction() as conn:
        await fetch_group(conn, key, group_id)  # 404 before taking any lock
        # Its codes first, by id, then the group: the order in which a PATCH (or a code's DELETE) locks a code
        # and then, through the code_count trigger, the group it leaves. Locking the group first deadlocked with
        # one (docs/api.md "Lost races"). A code put in the group between the two locks is detached below too.
        await conn.execute(LOCK_CODES, group_id)
        current = await fetch_group(conn, key, group_id, lock=True)
        check_version(current, if_match, "QR group")
        code_ids = [r["id"] for r in await conn.fetch(DETACH_CODES, group_id)]
        await conn.execute("DELETE FROM qr_groups WHERE id = $1", group_id)
        await record_event(conn, key.org_id, key.livemode, "qr_group.deleted", group_object(current))
    await ctx.cache.publish_group(ctx.db, group_id, code_ids)


async def mint_codes(ctx: ServiceContext, key: ApiKey, group_id: str, body: MintCodes) -> list[QRCodePublic]:
    """N inheriting child codes in one transaction, in name order, one `qr.created` event each."""
    async with ctx.transaction() as conn:
        await fetch_group(conn, key, group_id, keep=True)
        code_ids = await mint(conn, key, group_id, body, ctx.settings.default_domain)
        await sync_designs(conn, ctx.settings, code_ids)
        order = {code_id: n for n, code_id in enumerate(code_ids)}
        rows = sorted(await conn.fetch(f"{CODE_SELECT} WHERE c.id = ANY($1)", code_ids), key=lambda r: order[r["id"]])
        objects = await code_objects(conn, rows, ctx.settings)
        await conn.copy_records_to_table(
            "events", columns=("id", "org_id", "livemode", "type", "data"),
            records=[(new_id("evt"), key.org_id, key.livemode, "qr.created", {"object": obj}) for obj in objects])
    await ctx.cache.publish_codes(ctx.db, code_ids)
    return objects


async def scan_totals(ctx: ServiceContext, key: ApiKey, group_ids: list[str]) -> dict[str, int]:
    """Scans of each group's current codes (the sum of their `scan_count`), for lists of groups."""
    rows = await ctx.db.fetch(
        "SELECT group_id, sum(scan_count)::bigint AS scans FROM qr_codes"
        " WHERE group_id = ANY($3) AND org_id = $1 AND livemode = $2 AND deleted_at IS NULL GROUP BY group_id",
        key.org_id, key.livemode, group_ids)
    return {r["group_id"]: r["scans"] for r in rows}

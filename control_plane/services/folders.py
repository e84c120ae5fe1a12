"""Folders: named groupings of codes for people; deleting one leaves its codes without a folder, each with its
`qr.updated` event (docs/webhooks.md, "Change paths")."""

from __future__ import annotations

from typing import Annotated, Literal

import asyncpg
from pydantic import StringConstraints
from typing_extensions import TypedDict

from control_plane.services.context import ServiceContext
from control_plane.services.keys import ApiKey
from control_plane.services.listing import Choice, Listing, PageQuery, owned_page
from control_plane.services.qr_codes import SELECT as CODE_SELECT
from control_plane.services.qr_codes import code_objects
from control_plane.services.schemas import Body
from shared.ids import new_id
from shared.problems import not_found
from shared.times import timestamp

OWNED = "id = $1 AND org_id = $2 AND livemode = $3"
# The folder's live codes, detached as any other change of a code is (a new version); deleted codes detach
# through the foreign key (ON DELETE SET NULL) with no event, as nobody hears of a deleted code again.
# Deleted ones too: the foreign key's ON DELETE SET NULL locks them when the folder goes.
LOCK_CODES = "SELECT 1 FROM qr_codes WHERE folder_id = $1 ORDER BY id FOR UPDATE"
DETACH_CODES = """
UPDATE qr_codes SET folder_id = NULL, version = version + 1, updated_at = now()
WHERE folder_id = $1 AND deleted_at IS NULL RETURNING id"""


class FolderBody(Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class FolderPublic(TypedDict):
    id: str
    object: Literal["folder"]
    livemode: bool
    name: str
    created_at: str
    updated_at: str


def folder_object(row: asyncpg.Record) -> FolderPublic:
    return {"id": row["id"], "object": "folder", "livemode": row["livemode"], "name": row["name"],
            "created_at": timestamp(row["created_at"]), "updated_at": timestamp(row["updated_at"])}


async def create_folder(ctx: ServiceContext, key: ApiKey, body: FolderBody) -> FolderPublic:
    row = await ctx.db.fetchrow("INSERT INTO folders (id, org_id, livemode, name) VALUES ($1, $2, $3, $4) RETURNING *",
                                new_id("fld"), key.org_id, key.livemode, body.name)
    assert row is not None
    return folder_object(row)


async def list_folders(ctx: ServiceContext, key: ApiKey, page: PageQuery) -> Listing[FolderPublic]:
    rows, total = await owned_page(ctx.db, "folders", key, page)
    return Listing([folder_object(r) for r in rows], total, page.limit, page.offset)


async def folder_choices(ctx: ServiceContext, key: ApiKey) -> list[Choice]:
    """Every folder of the caller's organisation and mode, by name (the dashboard's folder picker)."""
    rows = await ctx.db.fetch("SELECT id, name FROM folders WHERE org_id = $1 AND livemode = $2"
                              " ORDER BY lower(name), id", key.org_id, key.livemode)
    return [{"id": r["id"], "name": r["name"]} for r in rows]


async def get_folder(ctx: ServiceContext, key: ApiKey, folder_id: str) -> FolderPublic:
    row = await ctx.db.fetchrow(f"SELECT * FROM folders WHERE {OWNED}", folder_id, key.org_id, key.livemode)
    if row is None:
        raise not_found("folder")
    return folder_object(row)


async def rename_folder(ctx: ServiceContext, key: ApiKey, folder_id: str, body: FolderBody) -> FolderPublic:
    row = await ctx.db.fetchrow(f"UPDATE folders SET name = $4, updated_at = now() WHERE {OWNED} RETURNING *",
                                folder_id, key.org_id, key.livemode, body.name)
    if row is None:
        raise not_found("folder")
    return folder_object(row)


async def delete_folder(ctx: ServiceContext, key: ApiKey, folder_id: str) -> None:
    """One transaction: the folder, and a `qr.updated` for each of its codes (`previous_attributes.folder_id`)."""
    async with ctx.transaction() as conn:
        if await conn.fetchval(f"SELECT id FROM folders WHERE {OWNED}", folder_id, key.org_id, key.livemode) is None:
            raise not_found("folder")
        # Its codes first, by id, then the folder: the order in which a bulk update (or a PATCH) locks the codes
        # it changes and then the folder it puts them in. Locking the folder first deadlocked with one
        # (docs/api.md §2.3), and detaching the codes in the table's order with one that holds some of them.
        await conn.execute(LOCK_CODES, folder_id)
        # Then the folder: a code being put in it meanwhile waits, then finds it gone (422), rather than
        # landing in it after its codes were detached and losing it again without an event; one that got there
        # first is detached below with the others.
        if await conn.fetchval(f"SELECT id FROM folders WHERE {OWNED} FOR UPDATE",
                               folder_id, key.org_id, key.livemode) is None:
            raise not_found("folder")
        code_ids = [r["id"] for r in await conn.fetch(DETACH_CODES, folder_id)]
        await conn.execute("DELETE FROM folders WHERE id = $1", folder_id)
        rows = await conn.fetch(f"{CODE_SELECT} WHERE c.id = ANY($1) ORDER BY c.id", code_ids)
        objects = await code_objects(conn, rows, ctx.settings)
        await conn.copy_records_to_table(
            "events", columns=("id", "org_id", "livemode", "type", "data"),
            records=[(new_id("evt"), key.org_id, key.livemode, "qr.updated",
                      {"object": obj, "previous_attributes": {"folder_id": folder_id}}) for obj in objects])

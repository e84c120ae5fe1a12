"""The `url_params` and `properties` maps of codes and groups, one key at a time.

Each change bumps the owner's version, records the owner's `…updated` event and is seen by the next scan.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import asyncpg
from pydantic import StringConstraints
from typing_extensions import TypedDict

from control_plane.services.context import ServiceContext
from control_plane.services.keys import ApiKey
from control_plane.services.params import apply_params
from control_plane.services.qr_codes import load_code, refuse_on_static
from control_plane.services.qr_groups import load_group
from control_plane.services.schemas import Body
from shared.outbox import previous_attributes, record_event
from shared.problems import Problem, field_error

MapField = Literal["url_params", "properties"]
ITEM_KINDS: dict[MapField, Literal["url_param", "property"]] = {"url_params": "url_param", "properties": "property"}
Loader = Callable[[ServiceContext, "asyncpg.Connection[Any]", ApiKey, str, bool], Awaitable[Mapping[str, Any]]]
Publisher = Callable[[ServiceContext, str], Awaitable[None]]


class MapItemPublic(TypedDict):
    object: Literal["url_param", "property"]
    key: str
    value: str


class MapValue(Body):
    value: Annotated[str, StringConstraints(max_length=512)]


@dataclass(frozen=True)
class MapOwner:
    table: str  # qr_codes
    table_prefix: str  # qr_code → qr_code_url_params
    owner_column: str  # code_id
    event: str  # qr.updated
    load: Loader  # the owner's API object; 404 when not the caller's
    publish: Publisher  # write-through after commit


async def _load_code(ctx: ServiceContext, conn: asyncpg.Connection[Any], key: ApiKey, code_id: str,
                     lock: bool) -> Mapping[str, Any]:
    return await load_code(conn, key, code_id, ctx.settings, lock=lock)


async def _publish_code(ctx: ServiceContext, code_id: str) -> None:
    await ctx.cache.publish_codes(ctx.db, [code_id])


async def _load_group(ctx: ServiceContext, conn: asyncpg.Connection[Any], key: ApiKey, group_id: str,
                      lock: bool) -> Mapping[str, Any]:
    return await load_group(conn, key, group_id, lock=lock)


async def _publish_group(ctx: ServiceContext, group_id: str) -> None:
    await ctx.cache.publish_group(ctx.db, group_id)


CODES = MapOwner("qr_codes", "qr_code", "code_id", "qr.updated", _load_code, _publish_code)
GROUPS = MapOwner("qr_groups", "qr_group", "group_id", "qr_group.updated", _load_group, _publish_group)


def map_item(field: MapField, key: str, value: str) -> MapItemPublic:
    return {"object": ITEM_KINDS[field], "key": key, "value": value}


async def list_items(ctx: ServiceContext, key: ApiKey, owner: MapOwner, field: MapField,
                     owner_id: str) -> list[MapItemPublic]:
    async with ctx.connection() as conn:
        obj = await owner.load(ctx, conn, key, owner_id, False)
    return [map_item(field, k, v) for k, v in obj[field].items()]


async def set_item(ctx: ServiceContext, key: ApiKey, owner: MapOwner, field: MapField, owner_id: str, name: str,
                   value: str | None) -> MapItemPublic:
    """Set one key (`value` None removes it: 404 if it is not set); returns the item."""
    if not 1 <= len(name) <= 64:
        raise field_error("key", "must be 1-64 characters")
    async with ctx.transaction() as conn:
        before = await owner.load(ctx, conn, key, owner_id, True)
        if value is not None and before.get("kind") == "static":  # as a PATCH of the code would be
            refuse_on_static([field])
        if value is None and name not in before[field]:
            raise Problem(404, f"No {ITEM_KINDS[field]} '{name}'.")
        if value is not None and before[field].get(name) == value:
            return map_item(field, name, value)  # no change: the same version, no event (docs/api.md §4.1)
        await apply_params(conn, f"{owner.table_prefix}_{field}", owner.owner_column, owner_id, {name: value})
        await conn.execute(f"UPDATE {owner.table} SET version = version + 1, updated_at = now() WHERE id = $1",
                           owner_id)
        after = await owner.load(ctx, conn, key, owner_id, False)
        await record_event(conn, key.org_id, key.livemode, owner.event, after, previous_attributes(before, after))
    await owner.publish(ctx, owner_id)
    return map_item(field, name, value or "")

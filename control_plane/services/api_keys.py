"""`/v1/api-keys`: keys of the caller's organisation and mode, shown once, with at most the caller's scopes."""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired

import asyncpg
from pydantic import Field, StringConstraints
from typing_extensions import TypedDict

from control_plane.services.context import ServiceContext
from control_plane.services.keys import ApiKey, create_key
from control_plane.services.listing import Listing, PageQuery, owned_page
from control_plane.services.schemas import Body
from shared.problems import Problem, field_error, not_found
from shared.times import timestamp

Scope = Literal["qr:read", "qr:write", "webhooks:read", "webhooks:write", "keys:write"]


class ApiKeyCreate(Body):
    name: Annotated[str, StringConstraints(max_length=200)] = ""
    scopes: Annotated[list[Scope], Field(min_length=1)]


class ApiKeyPublic(TypedDict):
    id: str
    object: Literal["api_key"]
    livemode: bool
    name: str
    prefix: str
    last4: str
    scopes: list[Scope]
    created_at: str
    revoked_at: str | None
    secret: NotRequired[str]  # only in the create response


def key_object(row: asyncpg.Record) -> ApiKeyPublic:
    return {"id": row["id"], "object": "api_key", "livemode": row["livemode"], "name": row["name"],
            "prefix": row["prefix"], "last4": row["last4"], "scopes": row["scopes"],
            "created_at": timestamp(row["created_at"]), "revoked_at": timestamp(row["revoked_at"])}


async def create_api_key(ctx: ServiceContext, caller: ApiKey, body: ApiKeyCreate) -> ApiKeyPublic:
    """The new key's object with its `secret`, the only time it is shown."""
    # A key can hand out only the scopes it holds itself.
    if extra := sorted(set(body.scopes) - caller.scopes):
        raise field_error("scopes", f"this API key does not hold {', '.join(extra)}")
    async with ctx.transaction() as conn:
        key = await create_key(conn, caller.org_id, livemode=caller.livemode, scopes=sorted(set(body.scopes)),
                               name=body.name)
        row = await conn.fetchrow("SELECT * FROM api_keys WHERE id = $1", key.id)
    assert row is not None
    return {**key_object(row), "secret": key.secret}


async def list_api_keys(ctx: ServiceContext, caller: ApiKey, page: PageQuery) -> Listing[ApiKeyPublic]:
    rows, total = await owned_page(ctx.db, "api_keys", caller, page, where="revoked_at IS NULL")
    return Listing([key_object(r) for r in rows], total, page.limit, page.offset)


async def revoke_api_key(ctx: ServiceContext, caller: ApiKey, key_id: str) -> None:
    """Refused at once: authentication reads the key's row on every request."""
    # A key may revoke only keys whose scopes it holds itself (as it may create only those).
    scopes = await ctx.db.fetchval(
        "WITH target AS (SELECT id, scopes FROM api_keys WHERE id = $1 AND org_id = $2 AND livemode = $3"
        " AND revoked_at IS NULL), revoked AS (UPDATE api_keys SET revoked_at = now() WHERE id = (SELECT id FROM"
        " target) AND scopes <@ $4::text[] RETURNING id) SELECT scopes FROM target",
        key_id, caller.org_id, caller.livemode, sorted(caller.scopes))
    if scopes is None:
        raise not_found("API key")
    if extra := sorted(set(scopes) - caller.scopes):
        raise Problem(403, f"This API key cannot revoke a key holding {', '.join(extra)}.")

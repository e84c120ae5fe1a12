"""Bulk minting of a group's child codes: thousands of rows in a few statements."""

from __future__ import annotations

from typing import Any

import asyncpg

from control_plane.services.keys import ApiKey
from control_plane.services.schemas import MintCodes
from control_plane.services.usage import meter_created
from shared.ids import new_id, new_slug
from shared.problems import Problem

ATTEMPTS = 8


async def mint(conn: asyncpg.Connection[Any], key: ApiKey, group_id: str, body: MintCodes, domain: str) -> list[str]:
    """Insert `body.count` inheriting codes (empty destination and status) in the caller's transaction.

    Random slugs that collide with existing ones are skipped by ON CONFLICT and drawn again for those codes
    only: each keeps its id and name, so the names stay 1…N and the ids come back in that order.
    """
    await meter_created(conn, key, body.count)
    width = len(str(body.count))
    names = [f"{body.name_prefix}{n}" if body.name_prefix else f"{n:0{width}d}" for n in range(1, body.count + 1)]
    ids = [new_id("qr") for _ in names]
    pending = list(range(body.count))
    for _ in range(ATTEMPTS):
        inserted = await conn.fetch(
            "INSERT INTO qr_codes (id, org_id, livemode, kind, type, name, slug, domain, group_id, design, tags)"
            " SELECT i, $1, $2, 'dynamic', 'url', n, s, $3, $4, $5, $6"
            " FROM unnest($7::text[], $8::text[], $9::text[]) AS t(i, n, s)"
            " ON CONFLICT (domain, slug) WHERE slug IS NOT NULL DO NOTHING RETURNING id",
            key.org_id, key.livemode, domain, group_id, body.design, body.tags,
            [ids[i] for i in pending], [names[i] for i in pending], [new_slug() for _ in pending])
        done = {r["id"] for r in inserted}
        pending = [i for i in pending if ids[i] not in done]
        if not pending:
            return ids
    raise Problem(503, "Could not allocate free slugs; retry.", headers={"Retry-After": "1"})

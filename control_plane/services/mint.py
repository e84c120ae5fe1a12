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

    Random slugs that collide with existing ones are skipped by ON CONFLICT and drawn again.
    """
    await meter_created(conn, key, body.count)
    minted: list[str] = []
    width = len(str(body.count))
    for _ in range(ATTEMPTS):
        missing = body.count - len(minted)
        if missing == 0:
            return minted
        numbers = range(len(minted) + 1, len(minted) + missing + 1)
        names = [f"{body.name_prefix}{n}" if body.name_prefix else f"{n:0{width}d}" for n in numbers]
        ids = [new_id("qr") for _ in numbers]
        slugs = [new_slug() for _ in numbers]
        inserted = await conn.fetch(
            "INSERT INTO qr_codes (id, org_id, livemode, kind, type, name, slug, domain, group_id, design, tags)"
            " SELECT i, $1, $2, 'dynamic', 'url', n, s, $3, $4, $5, $6"
            " FROM unnest($7::text[], $8::text[], $9::text[]) AS t(i, n, s)"
            " ON CONFLICT (domain, slug) WHERE slug IS NOT NULL DO NOTHING RETURNING id",
            key.org_id, key.livemode, domain, group_id, body.design, body.tags, ids, names, slugs)
        minted += [r["id"] for r in inserted]
    raise Problem(503, "Could not allocate free slugs; retry.", headers={"Retry-After": "1"})

"""The ordered key/value maps (url_params, properties) of codes and groups."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from shared.problems import field_error

MAX_KEYS = 50
TABLES = ("qr_code_url_params", "qr_code_properties", "qr_group_url_params", "qr_group_properties")


def pairs_to_dict(pairs: list[list[str]]) -> dict[str, str]:
    return {k: v for k, v in pairs}


async def apply_params(conn: asyncpg.Connection[Any], table: str, owner_column: str, owner_id: str,
                       patch: Mapping[str, str | None] | None, *, replace: bool = False) -> None:
    """Merge-patch a map: keys set to a value are upserted (keeping their position), `null` deletes.

    `patch=None` clears the map; `replace` clears it before applying (create).
    """
    assert table in TABLES and owner_column in ("code_id", "group_id")
    if patch is None or replace:
        await conn.execute(f"DELETE FROM {table} WHERE {owner_column} = $1", owner_id)
    if not patch:
        return
    removed = [k for k, v in patch.items() if v is None]
    if removed:
        await conn.execute(f"DELETE FROM {table} WHERE {owner_column} = $1 AND key = ANY($2)", owner_id, removed)
    kept = [(k, v) for k, v in patch.items() if v is not None]
    if kept:
        await conn.executemany(
            f"INSERT INTO {table} ({owner_column}, key, value) VALUES ($1, $2, $3)"
            f" ON CONFLICT ({owner_column}, key) DO UPDATE SET value = EXCLUDED.value",
            [(owner_id, k, v) for k, v in kept])
    count = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {owner_column} = $1", owner_id)
    if count > MAX_KEYS:
        field = "url_params" if "url_params" in table else "properties"
        raise field_error(field, f"at most {MAX_KEYS} keys")

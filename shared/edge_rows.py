"""Reading edge rows from PostgreSQL and storing them in Redis, version-checked.

The control plane writes rows through after each commit; the edge reads through on a Redis miss.
Both use these functions, so the cached format has one definition.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis

from shared.keys import RedisKeys
from shared.rows import CodeRow, Destination, GroupRow
from shared.times import timestamp


def _destination_columns(alias: str) -> str:
    return (f"{alias}.destination_type, {alias}.destination_url,"
            f" {alias}.destination_page::text AS destination_page,"
            f" {alias}.destination_chatbot::text AS destination_chatbot,"
            f" {alias}.destination_knowledge_base::text AS destination_knowledge_base")


def _routing_columns(alias: str) -> str:
    return (f"{alias}.rules, {alias}.split, {alias}.valid_from, {alias}.valid_until, {alias}.max_scans,"
            f" {alias}.expired_destination, {alias}.password_hash")


CODE_COLUMNS = f"""
    c.id, c.version, c.org_id, c.livemode, c.group_id, c.status, c.deleted_at IS NOT NULL AS deleted,
    {_destination_columns('c')}, {_routing_columns('c')},
    c.scan_limit_reached_at IS NOT NULL AS limit_reached,
    COALESCE((SELECT array_agg(ARRAY[p.key, p.value] ORDER BY p.position)
              FROM qr_code_url_params p WHERE p.code_id = c.id), '{{}}') AS url_params,
    COALESCE((SELECT array_agg(ARRAY[p.key, p.value] ORDER BY p.position)
              FROM qr_code_properties p WHERE p.code_id = c.id), '{{}}') AS properties"""

GROUP_COLUMNS = f"""
    g.id, g.version, g.status, {_destination_columns('g')}, {_routing_columns('g')},
    COALESCE((SELECT array_agg(ARRAY[p.key, p.value] ORDER BY p.position)
              FROM qr_group_url_params p WHERE p.group_id = g.id), '{{}}') AS url_params,
    COALESCE((SELECT array_agg(ARRAY[p.key, p.value] ORDER BY p.position)
              FROM qr_group_properties p WHERE p.group_id = g.id), '{{}}') AS properties"""

CODE_BY_SLUG = f"SELECT {CODE_COLUMNS} FROM qr_codes c WHERE c.domain = $1 AND c.slug = $2"
CODES_BY_SLUGS = f"""SELECT {CODE_COLUMNS}, c.domain, c.slug FROM qr_codes c
    JOIN unnest($1::text[], $2::text[]) AS wanted (domain, slug) ON c.domain = wanted.domain AND c.slug = wanted.slug"""
CODES_BY_ID = f"SELECT {CODE_COLUMNS} FROM qr_codes c WHERE c.id = ANY($1::text[])"
GROUPS_BY_ID = f"SELECT {GROUP_COLUMNS} FROM qr_groups g WHERE g.id = ANY($1::text[])"

# Whether Redis's row `current` is newer than ARGV[version] (then a write of that version keeps out).
_NEWER = """
local function newer(current, version)
  local ok, row = pcall(cjson.decode, current)
  return ok and type(row) == 'table' and tonumber(row['v']) ~= nil and tonumber(row['v']) > tonumber(version)
end
"""
# Replace each row only when the stored one is not newer: an older write never overwrites a newer one.
# KEYS[i] gets ARGV[2i-1] (the row) if ARGV[2i] (its version) is not older. Returns, for each row kept out,
# its index and what Redis holds instead (whoever holds a newer version than the database is corrupt:
# the control plane checks, see control_plane/services/cache.py).
SET_IF_NEWER = _NEWER + """
local kept = {}
for i, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  if current and newer(current, ARGV[2 * i]) then
    kept[#kept + 1] = i
    kept[#kept + 1] = current
  else
    redis.call('SET', key, ARGV[2 * i - 1])
  end
end
return kept
"""
# A repair: KEYS[i] gets ARGV[3i-1] (a row of version ARGV[3i], read from PostgreSQL) if Redis still holds
# ARGV[3i-2] — the row PostgreSQL contradicts — else only if no newer row arrived meanwhile. An empty row
# (a code PostgreSQL does not have) deletes the key if Redis still holds what was seen.
REPLACE_IF_UNCHANGED = _NEWER + """
local replaced = 0
for i, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  if ARGV[3 * i - 1] == '' then
    if current == ARGV[3 * i - 2] then
      redis.call('DEL', key)
      replaced = replaced + 1
    end
  elseif current == ARGV[3 * i - 2] or not (current and newer(current, ARGV[3 * i])) then
    redis.call('SET', key, ARGV[3 * i - 1])
    replaced = replaced + 1
  end
end
return replaced
"""

# Removes each KEYS[i] only while it holds a row of the code ARGV[i]: a code's row at an address it no longer has
# (a deleted domain's codes, docs/api.md §2.3), never another code's row that took the address since. Returns
# how many it removed.
REMOVE_IF_OF = """
local removed = 0
for i, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  if current then
    local ok, row = pcall(cjson.decode, current)
    if ok and type(row) == 'table' and row['id'] == ARGV[i] then
      redis.call('DEL', key)
      removed = removed + 1
    end
  end
end
return removed
"""


def stored_version(raw: bytes) -> float | None:
    """The version of a row as the version check reads it (None: it has none)."""
    try:
        return float(orjson.loads(raw)["v"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def _destination(record: asyncpg.Record) -> Destination:
    return Destination(record["destination_type"], record["destination_url"], record["destination_page"],
                       record["destination_chatbot"], record["destination_knowledge_base"])


def _pairs(items: list[list[str]]) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in items)


ROUTING_FIELDS = ("rules", "split", "valid_from", "valid_until", "max_scans", "expired_destination")


def routing_text(record: asyncpg.Record) -> str:
    """The fields of docs/rules.md that are set, as one JSON text: hashable, so the edge can share one
    compiled plan between rows that carry the same text, and decoded only when a row is compiled."""
    fields = {name: record[name] for name in ROUTING_FIELDS if record[name] is not None}
    for name in ("valid_from", "valid_until"):
        if name in fields:
            fields[name] = timestamp(fields[name])
    return orjson.dumps(fields).decode() if fields else ""


def code_row(record: asyncpg.Record) -> CodeRow:
    return CodeRow(record["id"], record["version"], record["org_id"], record["livemode"], record["group_id"],
                   record["status"], _destination(record), _pairs(record["url_params"]),
                   _pairs(record["properties"]), record["deleted"], routing_text(record), record["password_hash"],
                   record["limit_reached"])


def group_row(record: asyncpg.Record) -> GroupRow:
    return GroupRow(record["id"], record["version"], record["status"], _destination(record),
                    _pairs(record["url_params"]), _pairs(record["properties"]), routing_text(record),
                    record["password_hash"])


async def load_code_by_slug(db: asyncpg.Pool[Any] | asyncpg.Connection[Any], domain: str,
                            slug: str) -> CodeRow | None:
    record = await db.fetchrow(CODE_BY_SLUG, domain, slug)
    return code_row(record) if record else None


async def load_codes_by_slugs(db: asyncpg.Pool[Any] | asyncpg.Connection[Any],
                              wanted: list[tuple[str, str]]) -> dict[tuple[str, str], CodeRow]:
    """Many codes by (domain, slug) in one query; absent ones are missing from the result."""
    records = await db.fetch(CODES_BY_SLUGS, [d for d, _ in wanted], [s for _, s in wanted])
    return {(r["domain"], r["slug"]): code_row(r) for r in records}


async def load_codes(db: asyncpg.Pool[Any] | asyncpg.Connection[Any], ids: list[str]) -> dict[str, CodeRow]:
    return {r["id"]: code_row(r) for r in await db.fetch(CODES_BY_ID, ids)}


async def load_groups(db: asyncpg.Pool[Any] | asyncpg.Connection[Any],
                      ids: list[str]) -> dict[str, GroupRow]:
    return {r["id"]: group_row(r) for r in await db.fetch(GROUPS_BY_ID, ids)} if ids else {}


class RowStore:
    """Writes edge rows to Redis with the version check (EVALSHA of one registered script)."""

    def __init__(self, redis: aioredis.Redis, keys: RedisKeys) -> None:
        self.redis = redis
        self.keys = keys
        self._set_if_newer = redis.register_script(SET_IF_NEWER)
        self._replace_if_unchanged = redis.register_script(REPLACE_IF_UNCHANGED)
        self._remove_if_of = redis.register_script(REMOVE_IF_OF)

    async def store_code(self, domain: str, slug: str, row: CodeRow) -> bool:
        return not await self.store_codes_kept([(domain, slug, row)])

    async def store_codes(self, rows: list[tuple[str, str, CodeRow]]) -> int:
        """Many (domain, slug, row) in one command; returns how many were stored."""
        return len(rows) - len(await self.store_codes_kept(rows))

    async def store_codes_kept(self, rows: list[tuple[str, str, CodeRow]]) -> list[tuple[int, bytes]]:
        """Like `store_codes`; returns the rows kept out by a newer version: (index in `rows`, what Redis holds)."""
        if not rows:
            return []
        keys = [self.keys.code(domain, slug) for domain, slug, _ in rows]
        args = [value for _, _, row in rows for value in (row.encode(), row.version)]
        return _kept(await self._set_if_newer(keys=keys, args=args))

    async def store_group(self, row: GroupRow) -> bool:
        return await self.store_group_kept(row) is None

    async def store_group_kept(self, row: GroupRow) -> bytes | None:
        """Like `store_group`; returns what Redis holds instead when a newer version kept the row out."""
        kept = _kept(await self._set_if_newer(keys=[self.keys.group(row.id)], args=[row.encode(), row.version]))
        return kept[0][1] if kept else None

    async def replace(self, rows: list[tuple[str, bytes, CodeRow | GroupRow | None]]) -> int:
        """(key, what Redis was seen holding, the database's row or None): replaces (or deletes) what was seen,
        whatever its version; returns how many keys it changed."""
        if not rows:
            return 0
        args = [value for _, seen, row in rows
                for value in ((seen, row.encode(), row.version) if row is not None else (seen, b"", 0))]
        return int(await self._replace_if_unchanged(keys=[key for key, _, _ in rows], args=args))

    async def remove_codes_of(self, rows: list[tuple[str, str, str]]) -> int:
        """(domain, slug, code id): removes each address's row if it is that code's; returns how many."""
        if not rows:
            return 0
        keys = [self.keys.code(domain, slug) for domain, slug, _ in rows]
        return int(await self._remove_if_of(keys=keys, args=[code_id for _, _, code_id in rows]))


def _kept(reply: list[Any]) -> list[tuple[int, bytes]]:
    return [(int(reply[n]) - 1, reply[n + 1]) for n in range(0, len(reply), 2)]

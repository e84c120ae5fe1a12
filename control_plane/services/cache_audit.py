"""Compares Redis's edge rows with PostgreSQL's, a slice at a time, and replaces the ones PostgreSQL
contradicts (docs/security.md, "Redis's rows follow the database").

Every row scanroute writes to Redis is read from PostgreSQL and carries the version of its database row,
so a row whose version is ahead of the database's, a row at the database's version with other contents,
or a code row for a (domain, slug) that has no code, was written by something else that could write
Redis. A write of the code or group repairs its own row (control_plane/services/cache.py); this walk
repairs the rows that no write touches, so that a planted redirect does not last until the code changes.
A row behind the database is only stale, and left to the cache sync.

Each pass is one `SCAN` step (about `slice` keys of the namespace), one `MGET` and one query per kind;
a replacement applies only if Redis still holds the row that was compared, so a write that lands
meanwhile is never undone. Repaired keys are named in an invalidation entry, so edges drop their copies.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from control_plane.services.cache import EdgeCache, Repair, tombstone
from shared.edge_rows import load_codes_by_slugs, load_groups, stored_version
from shared.rows import CodeRow, GroupRow

log = logging.getLogger(__name__)
SLICE = 1000  # keys per SCAN step


def _glob(text: str) -> str:
    """`text` as a literal in a SCAN MATCH pattern."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


def code_key_parts(key: str, prefix: str) -> tuple[str, str] | None:
    """(domain, slug) of a code key `{prefix}{len(domain)}:{domain}:{slug}` (shared.keys), or None."""
    length, sep, rest = key[len(prefix):].partition(":")
    if not sep or not (length.isascii() and length.isdigit()) or len(rest) <= int(length) or rest[int(length)] != ":":
        return None
    return rest[:int(length)], rest[int(length) + 1:]


def _contradicts(raw: bytes, fresh: CodeRow | GroupRow) -> bool:
    """Ahead of the database's version, or at it with other contents. A row behind it is only stale: the
    outbox's cache sync brings it up to date (control_plane/services/cache_sync.py)."""
    version = stored_version(raw)
    return version is None or version > fresh.version or (version == fresh.version and raw != fresh.encode())


class CacheAudit:
    def __init__(self, db: asyncpg.Pool[Any], cache: EdgeCache, slice: int = SLICE) -> None:
        self.db = db
        self.cache = cache
        self.slice = slice
        self.cursor = 0
        namespace = cache.keys.namespace
        self.code_prefix = f"{namespace}:code:"
        self.group_prefix = f"{namespace}:group:"
        self.pattern = _glob(namespace) + ":*"

    async def run_once(self) -> int:
        """One step of the walk; returns how many rows it replaced or removed."""
        redis = self.cache.redis
        self.cursor, raw_keys = await redis.scan(self.cursor, match=self.pattern, count=self.slice)
        codes: dict[str, tuple[str, str]] = {}
        groups: dict[str, str] = {}
        for raw_key in raw_keys:
            key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
            if key.startswith(self.code_prefix):
                if (parts := code_key_parts(key, self.code_prefix)) is not None:
                    codes[key] = parts
            elif key.startswith(self.group_prefix):
                groups[key] = key[len(self.group_prefix):]
        repairs = await self._codes(codes) + await self._groups(groups)
        if repairs:
            await self.cache.replace(repairs)
            await self.cache.invalidate([key for key, _, _ in repairs])
        return len(repairs)

    async def _codes(self, codes: dict[str, tuple[str, str]]) -> list[Repair]:
        if not codes:
            return []
        held: list[Any] = await self.cache.redis.mget(list(codes))
        rows = await load_codes_by_slugs(self.db, list(codes.values()))  # read after Redis answered
        repairs: list[Repair] = []
        for (key, wanted), raw in zip(codes.items(), held, strict=True):
            fresh = rows.get(wanted)
            if raw is not None and (fresh is None or _contradicts(raw, fresh)):
                repairs.append((key, raw, fresh))
        return repairs

    async def _groups(self, groups: dict[str, str]) -> list[Repair]:
        if not groups:
            return []
        held: list[Any] = await self.cache.redis.mget(list(groups))
        rows = await load_groups(self.db, list(groups.values()))
        repairs: list[Repair] = []
        for (key, group_id), raw in zip(groups.items(), held, strict=True):
            fresh = rows.get(group_id) or tombstone(group_id)
            if raw is not None and _contradicts(raw, fresh):
                repairs.append((key, raw, fresh))
        return repairs

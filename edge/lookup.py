"""Finding a code's and its group's edge rows: Redis first, PostgreSQL on a miss (which repopulates Redis)."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from shared.edge_rows import RowStore, load_code_by_slug, load_groups
from shared.keys import RedisKeys
from shared.rows import CodeRow, GroupRow

log = logging.getLogger(__name__)


class RowLookup:
    def __init__(self, redis: aioredis.Redis, db: asyncpg.Pool[Any], keys: RedisKeys) -> None:
        self.redis = redis
        self.db = db
        self.keys = keys
        self.rows = RowStore(redis, keys)

    async def code(self, domain: str, slug: str) -> CodeRow | None:
        raw = await self.redis.get(self.keys.code(domain, slug))
        if raw is not None:
            return CodeRow.decode(raw)
        row = await load_code_by_slug(self.db, domain, slug)
        if row is not None:
            await self.rows.store_code(domain, slug, row)
        return row

    async def group(self, group_id: str) -> GroupRow | None:
        raw = await self.redis.get(self.keys.group(group_id))
        if raw is not None:
            return GroupRow.decode(raw)
        row = (await load_groups(self.db, [group_id])).get(group_id)
        if row is not None:
            await self.rows.store_group(row)
        return row

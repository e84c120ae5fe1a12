"""Cache write-through after commit: edge rows to Redis, then an invalidation message for every edge."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions

from shared.edge_rows import RowStore, load_codes, load_groups
from shared.keys import INVALIDATION_FIELD, INVALIDATION_MAXLEN, RedisKeys
from shared.rows import Destination, GroupRow

log = logging.getLogger(__name__)
DELETED_GROUP_VERSION = 2**62  # ids are never reused, so a tombstone is final


class EdgeCache:
    def __init__(self, redis: aioredis.Redis, keys: RedisKeys) -> None:
        self.redis = redis
        self.keys = keys
        self.rows = RowStore(redis, keys)

    async def publish_codes(self, db: asyncpg.Pool[Any], code_ids: list[str], *, raise_errors: bool = False) -> None:
        """Write the codes' current rows and tell every edge to drop its copy."""
        records = await db.fetch("SELECT id, domain, slug FROM qr_codes WHERE id = ANY($1) AND slug IS NOT NULL",
                                 code_ids)
        if not records:
            return
        rows = await load_codes(db, [r["id"] for r in records])
        try:
            await self.rows.store_codes([(r["domain"], r["slug"], rows[r["id"]]) for r in records])
            await self._invalidate([self.keys.code(r["domain"], r["slug"]) for r in records])
        except redis.exceptions.RedisError as exc:
            if raise_errors:
                raise
            log.warning("write-through of %d codes failed; the cache sync will repeat it: %r", len(records), exc)

    async def publish_group(self, db: asyncpg.Pool[Any], group_id: str, *, raise_errors: bool = False) -> None:
        """Write one group row: O(1) whatever the number of its codes.

        A deleted group becomes a final tombstone (no status, destination or params: exactly what its
        detached codes resolve against), so no late read-through can bring the old row back.
        """
        rows = await load_groups(db, [group_id])
        row = rows.get(group_id) or GroupRow(group_id, DELETED_GROUP_VERSION, None, Destination())
        try:
            await self.rows.store_group(row)
            await self._invalidate([self.keys.group(group_id)])
        except redis.exceptions.RedisError as exc:
            if raise_errors:
                raise
            log.warning("write-through of group %s failed; the cache sync will repeat it: %r", group_id, exc)

    async def _invalidate(self, cache_keys: list[str]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in cache_keys:
                pipe.xadd(self.keys.invalidations, {INVALIDATION_FIELD: key}, maxlen=INVALIDATION_MAXLEN,
                          approximate=True)
            await pipe.execute()

"""Publishing a committed change to the edges: rows through to Redis, an invalidation for every edge, and
the wait for read-your-writes (docs/freshness.md). Every write that changes a scan's answer ends here.

`publish_codes` / `publish_group` never fail the request: when Redis cannot be updated, they record in
PostgreSQL that Redis needs repair (edges then read PostgreSQL until the cache sync has repaired it),
retry within the lease, and return — the change is committed either way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions
from redis.typing import EncodableT, FieldT

from control_plane.services.code_filter import CodeFilterWriter
from control_plane.services.edge_confirmations import EdgeConfirmations
from shared.code_filter import DELTA_KEYS, Shape, encode_delta
from shared.edge_rows import RowStore, load_codes, load_groups, stored_version
from shared.keys import (
    EDGE_LEASE,
    FILTER_DELTA_FIELD,
    INVALIDATION_FIELD,
    INVALIDATION_KEYS_PER_ENTRY,
    INVALIDATION_MAXLEN,
    NEGATIVE_ENTRIES,
    RedisKeys,
)
from shared.rows import CodeRow, Destination, GroupRow

log = logging.getLogger(__name__)
DELETED_GROUP_VERSION = 2**62  # ids are never reused, so a tombstone is final
RETIRED_PREFIX = "deleted:"  # a deleted domain's codes' `domain` (retired_domain)
FIRST_VERSION = 1  # a code at its first version was never cached anywhere except as "unknown"
REDIS_FAILURES = (OSError, TimeoutError, redis.exceptions.RedisError)
RETRY_PAUSE = 0.1  # seconds between write-through attempts while Redis does not answer
# Rows per version-checked script call: minting or importing 10,000 codes is ten short calls, so Redis never
# blocks the edges for one long script, and each call has the lease to answer on its own.
ROWS_PER_CALL = 1_000
# Redis must be repaired past every transaction that had committed by now (this write's included) before its
# rows count again: the first transaction id not yet handed out is the horizon the cache sync must reach
# (cache_sync.py). Not the newest `seq`: a transaction that took a lower one may commit later.
MARK_REPAIR = """UPDATE cache_repair
    SET pending_through = GREATEST(pending_through, pg_snapshot_xmax(pg_current_snapshot())::text::bigint)"""

T = TypeVar("T")
Write = Callable[[], Awaitable[str | None]]  # writes through; returns the last invalidation's stream id
Repair = tuple[str, bytes, CodeRow | GroupRow | None]  # key, what Redis holds, the database's row (None: none)


def retired_domain(domain_id: str, hostname: str) -> str:
    """What a deleted domain's codes get as their `domain`: their old host's slugs are free again, and no edge
    resolves a `Host` with a colon inside (docs/api.md §2.3). The host stays readable in it, so that any
    re-application of such a code removes its row from its old address (`write_codes`)."""
    return f"{RETIRED_PREFIX}{domain_id}:{hostname}"


def retired_host(domain: str) -> str | None:
    """The host a code left with its domain's deletion (`retired_domain`), or None: a domain in use."""
    if not domain.startswith(RETIRED_PREFIX):
        return None
    return domain[len(RETIRED_PREFIX):].partition(":")[2] or None


def tombstone(group_id: str) -> GroupRow:
    """A deleted group's final row: no status, destination or params, exactly what its detached codes resolve
    against."""
    return GroupRow(group_id, DELETED_GROUP_VERSION, None, Destination())


def filter_delta(codes: list[tuple[str, str]], shapes: set[Shape | None]) -> bytes | None:
    """The bits of these codes, for the edges to set them in their copies (shared/code_filter.py); None
    (every edge loads the filter again) when too many, or not all set in one filter."""
    if len(codes) > DELTA_KEYS or len(shapes) != 1:
        return None
    (shape,) = shapes
    return None if shape is None else encode_delta(shape, codes)


class EdgeCache:
    def __init__(self, redis: aioredis.Redis, keys: RedisKeys, lease: float = EDGE_LEASE) -> None:
        self.redis = redis
        self.keys = keys
        self.lease = lease
        self.rows = RowStore(redis, keys)
        self.confirmations = EdgeConfirmations(redis, keys, lease)
        self.code_filter = CodeFilterWriter(redis, keys)

    async def publish_codes(self, db: asyncpg.Pool[Any], code_ids: list[str]) -> None:
        """After commit: the codes' rows to Redis, then wait until no edge can answer their old state."""
        await self._publish(db, lambda: self.write_codes(db, code_ids))

    async def publish_group(self, db: asyncpg.Pool[Any], group_id: str, code_ids: list[str] | None = None) -> None:
        """After commit: the group's row to Redis (O(1) whatever its number of codes), and the rows of the codes
        the change itself updated (a deleted group's, detached), then wait likewise — once for both."""
        async def write() -> str | None:
            position = await self.write_group(db, group_id)
            return (await self.write_codes(db, code_ids) if code_ids else None) or position

        await self._publish(db, write)

    async def write_codes(self, db: asyncpg.Pool[Any], code_ids: list[str]) -> str | None:
        """Write the codes' current rows and tell every edge to drop its copy; raises if Redis fails.

        New codes (first version) are only announced with one "forget unknown slugs" entry, so minting
        10,000 codes appends one entry, not 10,000. The last entry also brings every edge's copy of the filter
        of existing codes up to date (shared/code_filter.py): it names the bits of all these (domain, slug),
        whether or not Redis's filter had them already (an earlier attempt of this write, or another code,
        may have set them unannounced); when it cannot (more than DELTA_KEYS codes, no filter in Redis, or a
        rebuild meanwhile) it says "forget unknown slugs" and the edges load the whole filter again. A code
        created, or given a new domain, is scanned 302 right after the write returns.

        A code whose domain was deleted (`retired_host`) has no address any more: its row leaves its old one, if
        Redis still holds it there, and it gets no row or bits of its own — the same whether this is the
        domain delete's write-through or the cache sync re-applying the code's new version after that was
        lost (docs/freshness.md, "The cache sync's cursor"). A key a late read-through writes back is one the
        cache audit removes.
        """
        found = await db.fetch("SELECT id, domain, slug FROM qr_codes WHERE id = ANY($1) AND slug IS NOT NULL",
                               code_ids)
        retired = [(host, r["slug"], r["id"]) for r in found if (host := retired_host(r["domain"])) is not None]
        records = [r for r in found if retired_host(r["domain"]) is None]
        for start in range(0, len(retired), ROWS_PER_CALL):
            await self._answered(self.rows.remove_codes_of(retired[start:start + ROWS_PER_CALL]))
        left = [self.keys.code(host, slug) for host, slug, _ in retired]  # every edge drops its copy too
        if not records:
            return await self.invalidate(left)
        rows = await load_codes(db, [r["id"] for r in records])
        entries = [(r["domain"], r["slug"], rows[r["id"]]) for r in records]
        kept: list[tuple[int, bytes]] = []
        for start in range(0, len(entries), ROWS_PER_CALL):
            chunk = await self._answered(self.rows.store_codes_kept(entries[start:start + ROWS_PER_CALL]))
            kept += [(start + i, held) for i, held in chunk]
        repaired = await self._repair_codes(db, [(entries[i], held) for i, held in kept]) if kept else []
        shapes: set[Shape | None] = set()  # the filters these codes' bits were set in (one, unless a rebuild)
        for start in range(0, len(records), ROWS_PER_CALL):
            shapes.add(await self._answered(self.code_filter.add(
                (r["domain"], r["slug"]) for r in records[start:start + ROWS_PER_CALL])))
        delta = filter_delta([(r["domain"], r["slug"]) for r in records], shapes)
        changed = [self.keys.code(r["domain"], r["slug"]) for r in records if rows[r["id"]].version > FIRST_VERSION]
        negative = len(changed) < len(records) or delta is None
        changed += [key for key in repaired if key not in changed]  # a planted row may be cached at any version
        position = await self.invalidate(left + changed + ([NEGATIVE_ENTRIES] if negative else []),
                                         filter_delta=delta)
        if self.code_filter.lost:
            # Redis lost its data, the edge registry with it, so no edge is waited for: one that has not noticed
            # yet may still believe its copy of the filter (without these codes) until its fence closes.
            await asyncio.sleep(self.lease / 2)
        return position

    async def _repair_codes(self, db: asyncpg.Pool[Any],
                            kept: list[tuple[tuple[str, str, CodeRow], bytes]]) -> list[str]:
        """Rows that Redis kept out because it holds a newer version: either a write that committed after
        this one's read (it wins), or a row ahead of the database's own version — which no writer of ours
        makes, since versions come from PostgreSQL: something else wrote Redis. Those are replaced."""
        current = await load_codes(db, [row.id for (_, _, row), _ in kept])  # read after Redis answered
        repairs: list[Repair] = []
        for (domain, slug, row), held in kept:
            fresh = current.get(row.id)
            version = stored_version(held)
            if fresh is not None and (version is None or version > fresh.version):
                repairs.append((self.keys.code(domain, slug), held, fresh))
        return await self.replace(repairs)

    async def replace(self, repairs: list[Repair]) -> list[str]:
        """Replace rows that PostgreSQL contradicts (docs/security.md); returns their keys."""
        if not repairs:
            return []
        log.warning("Redis held %d edge row(s) that PostgreSQL contradicts (written by something other than"
                    " scanroute?); replaced from PostgreSQL: %s", len(repairs),
                    ", ".join(key for key, _, _ in repairs[:10]))
        await self._answered(self.rows.replace(repairs))
        return [key for key, _, _ in repairs]

    async def write_group(self, db: asyncpg.Pool[Any], group_id: str) -> str | None:
        """Write one group row; raises if Redis fails.

        A deleted group becomes a final tombstone (no status, destination or params: exactly what its
        detached codes resolve against), so no late read-through can bring the old row back.
        """
        rows = await load_groups(db, [group_id])
        row = rows.get(group_id) or tombstone(group_id)
        held = await self._answered(self.rows.store_group_kept(row))
        if held is not None:  # a newer version in Redis: a later write's, or one ahead of the database (above)
            fresh = (await load_groups(db, [group_id])).get(group_id) or tombstone(group_id)
            version = stored_version(held)
            if version is None or version > fresh.version:
                await self.replace([(self.keys.group(group_id), held, fresh)])
        return await self.invalidate([self.keys.group(group_id)])

    async def invalidate(self, cache_keys: list[str], filter_delta: bytes | None = None) -> str | None:
        """Tell every edge to drop these keys (without waiting for them); returns the last entry's id.
        `filter_delta` rides with the last entry (the one naming `*negative*`, if any)."""
        if not cache_keys:
            return None
        async with self.redis.pipeline(transaction=False) as pipe:
            for start in range(0, len(cache_keys), INVALIDATION_KEYS_PER_ENTRY):
                named = "\n".join(cache_keys[start:start + INVALIDATION_KEYS_PER_ENTRY])
                fields: dict[FieldT, EncodableT] = {INVALIDATION_FIELD: named}
                if filter_delta is not None and start + INVALIDATION_KEYS_PER_ENTRY >= len(cache_keys):
                    fields[FILTER_DELTA_FIELD] = filter_delta
                pipe.xadd(self.keys.invalidations, fields, maxlen=INVALIDATION_MAXLEN, approximate=True)
            ids = await self._answered(pipe.execute())
        last: bytes | str = ids[-1]
        return last.decode() if isinstance(last, bytes) else last

    async def _answered(self, call: Awaitable[T]) -> T:
        """One Redis round trip of a write-through, which must answer within the lease: a Redis that does
        not is unreachable for this write (`_publish`). The bound is per call, not per write, so a write of
        10,000 rows (and its PostgreSQL reads) on a busy machine is slow, never a false outage."""
        async with asyncio.timeout(self.lease):
            return await call

    async def _publish(self, db: asyncpg.Pool[Any], write: Write) -> None:
        deadline = time.monotonic() + self.lease
        try:
            position = await write()
        except REDIS_FAILURES as exc:
            log.warning("write-through failed; edges read PostgreSQL until the cache sync repairs Redis: %r", exc)
            await self._mark_repair(db)
            position = await self._retry(write, deadline)
        if position is not None:
            await self.confirmations.wait(position)

    async def _retry(self, write: Write, deadline: float) -> str | None:
        """Try again until the lease is over. Redis may have come back already, and edges that reconnected
        before the repair mark was set may trust its old rows: this write's own row must reach it.

        Once the lease is over without success, every edge has been unable to confirm for that long
        (Redis was unreachable), so none answers from its local cache any more.
        """
        while (remaining := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(RETRY_PAUSE, remaining))
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
                    return await write()
            except REDIS_FAILURES:
                continue
        return None

    async def _mark_repair(self, db: asyncpg.Pool[Any]) -> None:
        try:
            await db.execute(MARK_REPAIR, timeout=self.lease)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.error("could not mark Redis for repair: %r", exc)

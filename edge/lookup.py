"""Finding what a scan resolves to: local cache, then Redis, then PostgreSQL (which repopulates Redis)."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions

from edge.code_filter import CodeFilter
from edge.code_reads import CodeReads
from edge.local_cache import Fence, LocalCache, Miss
from edge.redis_link import RedisLink
from shared.edge_rows import RowStore, load_groups
from shared.keys import RedisKeys
from shared.resolve import Resolution, resolve
from shared.rows import CodeRow, GroupRow
from shared.scan_event import EventHead
from shared.scan_plan import Decision
from shared.settings import Templates

REDIS_FAILURES = (OSError, TimeoutError, redis.exceptions.RedisError)
log = logging.getLogger(__name__)


def _decoded(raw: bytes | str) -> GroupRow | None:
    """A row Redis holds in a shape we cannot read counts as a miss: PostgreSQL is the truth."""
    try:
        return GroupRow.decode(raw)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("unreadable cached group row, reading PostgreSQL instead: %r", exc)
        return None


class Resolutions:
    """Resolutions shared by codes that differ only in identity: a print run's codes usually inherit the
    group's destination and params, so thousands of codes share one precomputed Location template."""

    def __init__(self, templates: Templates, max_entries: int = 10_000) -> None:
        self.templates = templates
        self.max_entries = max_entries
        self._memo: dict[tuple[object, ...], Resolution] = {}

    def of(self, code: CodeRow, group: GroupRow | None) -> Resolution:
        # A code's own split is drawn with its id, so codes with routing fields of their own share nothing.
        key = (code.group_id, group.version if group else None, code.status, code.destination, code.url_params,
               code.properties, code.deleted, code.routing, code.routing and code.id, code.password_hash,
               code.limit_reached)
        resolution = self._memo.get(key)
        if resolution is None:
            if len(self._memo) >= self.max_entries:
                self._memo.clear()
            resolution = self._memo[key] = resolve(code, group, self.templates)
        return resolution


class PreparedScan:
    """What every scan of one code needs, computed once per (code row, group row) when the rows enter the local
    cache: the resolution (Location templates with the group's and the code's params merged, rules compiled),
    the scan event's constant members, and for a code without rules, split, validity or password (the usual
    case) its whole decision. A scan adds only the visitor's part."""

    __slots__ = ("code", "decided", "event", "plain", "resolution")

    def __init__(self, code: CodeRow, resolution: Resolution) -> None:
        self.code = code
        self.resolution = resolution
        self.event = EventHead(code.id, code.group_id, code.org_id, code.livemode, resolution.properties)
        # Every scan's decision when nothing about the visitor or the time can change it.
        self.plain = Decision(resolution.outcome, resolution.location) if resolution.plan is None else None
        # ... and EdgeApp.decide's answer for it: (decision, page, no extra headers).
        self.decided = (self.plain, self.plain.outcome, ()) if self.plain is not None else None


class CachedCode:
    """A code row and its prepared scan, memoised per group row (rows are immutable, so identity is version)."""

    __slots__ = ("_group", "_scan", "group_key", "row")

    def __init__(self, row: CodeRow, group_key: str | None) -> None:
        self.row = row
        self.group_key = group_key  # the local cache key of its group row, None without a group
        self._group: GroupRow | None = None
        self._scan: PreparedScan | None = None

    def scan(self, group: GroupRow | None, resolutions: Resolutions) -> PreparedScan:
        if self._scan is None or group is not self._group:
            self._scan = PreparedScan(self.row, resolutions.of(self.row, group))
            self._group = group
        return self._scan


def code_weight(code: CachedCode) -> int:
    """Estimated bytes of a cached code beyond its key and ENTRY_BYTES: its row and its prepared scan.

    Calibrated on the RSS growth of 100,000 cached and prepared codes (docs/edge.md): a code that takes all
    its routing from its group shares its group's resolution and costs about twice its JSON (245 bytes of
    JSON: 553 bytes); a code with a destination, params or properties of its own has a resolution of its
    own, about eight times its JSON (473 bytes of JSON: 3,689 bytes)."""
    row = code.row
    own = row.destination.type is not None or row.url_params or row.properties or row.routing or row.password_hash
    return (8 if own else 2) * len(row.encode()) + 400


def group_weight(group: GroupRow) -> int:
    return 2 * len(group.encode()) + 400


class RowLookup:
    def __init__(self, redis: aioredis.Redis, db: asyncpg.Pool[Any], keys: RedisKeys, link: RedisLink,
                 codes: LocalCache[CachedCode], groups: LocalCache[GroupRow], templates: Templates,
                 code_filter: CodeFilter | None = None) -> None:
        self.redis = redis
        self.db = db
        self.keys = keys
        self.link = link
        self.codes = codes
        self.groups = groups
        self.resolutions = Resolutions(templates)
        self.rows = RowStore(redis, keys)
        self.code_reads = CodeReads(redis, db, keys, link)
        self.code_filter = code_filter or CodeFilter(keys.code_filter, link, Fence())  # the latter never answers

    def find_cached(self, domain: str, slug: str, key: str) -> PreparedScan | None | Miss:
        """What `find` would answer, from the local cache (or the filter of existing codes) alone; MISS when
        it has to load. `key` is the code's (`self.keys.code(domain, slug)`, remembered with the target)."""
        code = self.codes.peek(key)
        if isinstance(code, Miss):
            return None if self.code_filter.absent(domain, slug) else code
        if code is None:
            return code
        group = self.groups.peek(code.group_key) if code.group_key is not None else None
        if isinstance(group, Miss):
            return group
        return code.scan(group, self.resolutions)

    async def find(self, domain: str, slug: str) -> PreparedScan | None:
        """The code and what a scan of it resolves to (without the visitor's query); None if unknown.

        An unknown slug that the filter of existing codes rules out costs no read and leaves no entry."""
        key = self.keys.code(domain, slug)
        code = self.codes.peek(key)
        if isinstance(code, Miss):
            if self.code_filter.absent(domain, slug):
                return None
            code = await self.codes.get(key, lambda: self._load_code(domain, slug))
        if code is None:
            return None
        group_id = code.row.group_id
        group = await self.groups.get(self.keys.group(group_id), lambda: self._load_group(group_id)) \
            if group_id else None
        return code.scan(group, self.resolutions)

    async def _load_code(self, domain: str, slug: str) -> CachedCode | None:
        row = await self.code_reads.read(domain, slug)
        if row is None:
            return None
        return CachedCode(row, self.keys.group(row.group_id) if row.group_id else None)

    async def _load_group(self, group_id: str) -> GroupRow | None:
        raw = await self._redis_get(self.keys.group(group_id))
        if raw is not None and (cached := _decoded(raw)):
            return cached
        row = (await load_groups(self.db, [group_id])).get(group_id)
        if row is not None and self.link.up:
            try:
                await self.rows.store_group(row)
            except REDIS_FAILURES as exc:
                self.link.mark_down(exc)
        return row

    async def _redis_get(self, key: str) -> bytes | str | None:
        if not self.link.rows_readable:
            return None
        try:
            raw: bytes | str | None = await self.redis.get(key)
        except REDIS_FAILURES as exc:
            self.link.mark_down(exc)
            return None
        return raw

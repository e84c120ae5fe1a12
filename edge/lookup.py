"""Finding what a scan resolves to: local cache, then Redis, then PostgreSQL (which repopulates Redis)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions

from edge.code_filter import CodeFilter
from edge.code_reads import CodeReads, Wanted
from edge.local_cache import MISS, Fence, LocalCache, Miss
from edge.redis_link import RedisLink
from edge.scan_stream import DirectRedis
from shared.edge_rows import RowStore, load_groups
from shared.keys import RedisKeys
from shared.resolve import Resolution, resolve
from shared.rows import NO_DESTINATION, CodeRow, GroupRow
from shared.scan_event import event_head
from shared.scan_plan import Decision
from shared.settings import Templates

REDIS_FAILURES = (OSError, TimeoutError, redis.exceptions.RedisError)
log = logging.getLogger(__name__)
Found = Callable[["PreparedScan | None | Exception"], None]  # what RowLookup.load calls back with
Waiting = tuple[Wanted, list[Found]]
Answer = tuple[Decision, str, Sequence[tuple[bytes, bytes]]]  # EdgeApp.decide's: decision, page, extra headers
Resolved = tuple[Resolution, Answer | None]  # Resolutions.of's


def _call(thens: list[Found], found: PreparedScan | None | Exception) -> None:
    for then in thens:
        try:
            then(found)
        except Exception:  # one waiter's failure must not keep the others waiting
            log.exception("answering a scan after its code was read failed")


def _settle(done: asyncio.Future[PreparedScan | None], found: PreparedScan | None | Exception) -> None:
    if done.done():
        return
    if isinstance(found, Exception):
        done.set_exception(found.again() if isinstance(found, Unresolvable) else found)
    else:
        done.set_result(found)


def _decoded(raw: bytes | str) -> GroupRow | None:
    """A row Redis holds in a shape we cannot read counts as a miss: PostgreSQL is the truth."""
    try:
        return GroupRow.decode(raw)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("unreadable cached group row, reading PostgreSQL instead: %r", exc)
        return None


class Unresolvable(Exception):
    """A cached code whose scan could not be prepared from its rows (logged once, when it was tried): its scans
    answer 503, without preparing again, until one of its rows changes. Passed around as a value; `again()`
    gives a copy to raise (an exception raised again and again keeps growing its traceback)."""

    def again(self) -> Unresolvable:
        return Unresolvable(*self.args)


class Resolutions:
    """Resolutions shared by codes that differ only in identity: a print run's codes usually inherit the
    group's destination and params, so thousands of codes share one precomputed Location template — and, for
    a code without rules, split, validity or password (the usual case), one whole decision."""

    def __init__(self, templates: Templates, max_entries: int = 10_000) -> None:
        self.templates = templates
        self.max_entries = max_entries
        self._memo: dict[tuple[object, ...], Resolved] = {}

    def of(self, code: CodeRow, group: GroupRow | None) -> Resolved:
        """The resolution, and every scan's answer when nothing about the visitor or the time can change it."""
        # A code's own split is drawn with its id, so codes with routing fields of their own share nothing.
        # The group row itself, not its version: a row repaired at the same version (docs/security.md) has other
        # contents, and must not find the resolution of the row it replaced.
        key = (code.group_id, group, code.status, code.destination, code.url_params,
               code.properties, code.deleted, code.routing, code.routing and code.id, code.password_hash,
               code.limit_reached)
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) >= self.max_entries:
                self._memo.clear()
            resolution = resolve(code, group, self.templates)
            # EdgeApp.decide's answer for it: (decision, page, no extra headers).
            decided = (Decision(resolution.outcome, resolution.location), resolution.outcome, ()) \
                if resolution.plan is None else None
            found = self._memo[key] = (resolution, decided)
        return found


class PreparedScan:
    """What every scan of one code needs, computed once per (code row, group row) when the rows enter the local
    cache: the resolution (Location templates with the group's and the code's params merged, rules compiled),
    the scan event's constant members, and for a code without rules, split, validity or password (the usual
    case) its whole decision. A scan adds only the visitor's part.

    Three objects the cycle collector tracks per cached code (this, its CachedCode and its cache entry; the
    decision is its resolution's, the event's members are bytes, the row is not tracked: shared/rows.py): a full
    cache holds hundreds of thousands, and the collector traverses each once (edge/heap.py)."""

    __slots__ = ("code", "decided", "event", "resolution")

    def __init__(self, code: CodeRow, resolved: Resolved) -> None:
        self.code = code
        self.resolution, self.decided = resolved
        self.event = event_head(code.id, code.group_id, code.org_id, code.livemode, self.resolution.properties)


class CachedCode:
    """A code row and its prepared scan, memoised per group row (rows are immutable, so identity is version)."""

    __slots__ = ("_group", "_scan", "group_key", "row")

    def __init__(self, row: CodeRow, group_key: str | None) -> None:
        self.row = row
        self.group_key = group_key  # the local cache key of its group row, None without a group
        self._group: GroupRow | None = None
        self._scan: PreparedScan | Unresolvable | None = None

    def scan(self, group: GroupRow | None, resolutions: Resolutions) -> PreparedScan | Unresolvable:
        if self._scan is None or group is not self._group:
            try:
                self._scan = PreparedScan(self.row, resolutions.of(self.row, group))
            except Exception as exc:  # logged once; its scans answer 503 until one of its rows changes
                log.exception("preparing the scan of %s failed", self.row.id)
                self._scan = Unresolvable(self.row.id, exc)
            self._group = group
        return self._scan


_PLAIN_JSON = len(CodeRow("", 0, "", True, "", "", NO_DESTINATION).encode())


def code_weight(code: CachedCode) -> int:
    """Estimated bytes of a cached code beyond its key and ENTRY_BYTES: its row and its prepared scan.

    Calibrated on the RSS growth of 100,000 cached and prepared codes (docs/edge.md): a code that takes all
    its routing from its group shares its group's resolution and decision and costs its JSON and 200 bytes
    (245 bytes of JSON: 928 bytes of RSS an entry, estimated at 982 with the key and ENTRY_BYTES); a code with
    a destination, params or properties of its own has a resolution of its own, about eight times its JSON
    (473 bytes of JSON: 3,689 bytes, measured before its decision and its event's members shrank)."""
    row = code.row
    if row.destination.type is not None or row.url_params or row.properties or row.routing or row.password_hash:
        return 8 * len(row.encode()) + 400
    # Its JSON's length without encoding it (a code row is weighed per miss): the members' names and
    # punctuation, then its strings.
    return _PLAIN_JSON + len(row.id) + len(row.org_id) + len(row.group_id or "") + len(row.status or "") + 200


def group_weight(group: GroupRow) -> int:
    return 2 * len(group.encode()) + 400


class RowLookup:
    def __init__(self, redis: aioredis.Redis, db: asyncpg.Pool[Any], keys: RedisKeys, link: RedisLink,
                 codes: LocalCache[CachedCode], groups: LocalCache[GroupRow], templates: Templates,
                 code_filter: CodeFilter | None = None, reader: DirectRedis | None = None) -> None:
        self.redis = redis
        self.db = db
        self.keys = keys
        self.link = link
        self.codes = codes
        self.groups = groups
        self.resolutions = Resolutions(templates)
        self.rows = RowStore(redis, keys)
        self.code_reads = CodeReads(redis, db, keys, link, reader)
        self.code_filter = code_filter or CodeFilter(keys.code_filter, link, Fence())  # the latter never answers
        self._waiting: dict[str, Waiting] = {}  # code key → what it is, and who waits for it
        self._loader: asyncio.Task[None] | None = None

    def find_cached(self, domain: str, slug: str, key: str) -> PreparedScan | None | Miss | Unresolvable:
        """What `find` would answer, from the local cache (or the filter of existing codes) alone; MISS when
        it has to load. `key` is the code's (`self.keys.code(domain, slug)`, remembered with the target)."""
        code = self.codes.peek(key)
        if isinstance(code, Miss):  # a code cached before (STALE) exists or existed: no need to ask the filter
            return None if code is MISS and self.code_filter.absent(domain, slug) else code
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
        found = self.find_cached(domain, slug, key)
        if isinstance(found, Unresolvable):
            raise found.again()
        if not isinstance(found, Miss):
            return found
        done: asyncio.Future[PreparedScan | None] = asyncio.get_running_loop().create_future()
        self.load(domain, slug, key, functools.partial(_settle, done))
        return await done

    def load(self, domain: str, slug: str, key: str, then: Found) -> None:
        """What `find_cached` could not answer, read and then passed to `then` (a row, None if unknown, or the
        error that made it unavailable). The misses of one loop turn share one read: a batch (no task, no
        future per miss), read while the next one gathers."""
        self.codes.misses += 1
        waiting = self._waiting.get(key)
        if waiting is None:
            self._waiting[key] = ((domain, slug), [then])
        else:
            waiting[1].append(then)  # single flight: one read per key and batch
        if self._loader is None:
            self._loader = asyncio.get_running_loop().create_task(self._load_batches())

    async def _load_batches(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                try:
                    await self._load_batch(batch)
                except Exception as exc:  # raised before any waiter was answered: each answers, unavailable
                    log.exception("code batch read failed")
                    for _, thens in batch.values():
                        _call(thens, exc)
        finally:
            self._loader = None

    async def _load_batch(self, batch: dict[str, Waiting]) -> None:
        codes: dict[str, CachedCode | None | Exception] = {}
        unread: dict[Wanted, str] = {}
        for key, (wanted, _) in batch.items():
            cached = self.codes.peek(key)  # perhaps read by the batch before
            if isinstance(cached, Miss):
                unread[wanted] = key
            else:
                codes[key] = cached
        if unread:
            codes.update(await self._read_codes(unread))
        groups = await self._groups_of(codes.values())
        for key, (_, thens) in batch.items():  # from here on nothing raises: each waiter is answered once
            _call(thens, self._prepared(codes[key], groups))

    def _prepared(self, code: CachedCode | None | Exception,
                  groups: dict[str, GroupRow | None | Exception]) -> PreparedScan | None | Exception:
        if code is None or isinstance(code, Exception):
            return code
        group = groups.get(code.group_key) if code.group_key is not None else None
        if isinstance(group, Exception):
            return group
        return code.scan(group, self.resolutions)  # a row we cannot resolve answers 503 alone, logged

    async def _read_codes(self, unread: dict[Wanted, str]) -> dict[str, CachedCode | None | Exception]:
        """Code rows by cache key, read and cached; a code read again unchanged keeps its cached object (and its
        prepared scan): a refresh after the TTL costs no decoding and no preparing."""
        started = self.codes.load_started()
        stale = {wanted: last for wanted, key in unread.items() if (last := self.codes.last(key)) is not None}
        codes: dict[str, CachedCode | None | Exception] = {}
        try:
            rows = await self.code_reads.read_many(unread, {wanted: c.row for wanted, c in stale.items()})
        except Exception as exc:
            return {key: self.codes.fallback(key) or exc for key in unread.values()}
        for wanted, key in unread.items():
            row = rows.get(wanted)
            if isinstance(row, Exception):
                codes[key] = row
                continue
            last = stale.get(wanted)
            if last is not None and last.row is row:
                codes[key] = last
                self.codes.renew(key, last, started)
                continue
            loaded = CachedCode(row, self.keys.group(row.group_id) if row.group_id else None) if row is not None \
                else None
            codes[key] = loaded
            self.codes.store(key, loaded, started)
        return codes

    async def _groups_of(self, codes: Iterable[object]) -> dict[str, GroupRow | None | Exception]:
        """The group rows of these codes: cached, else read (one read per group, shared by its codes)."""
        groups: dict[str, GroupRow | None | Exception] = {}
        for code in codes:
            if isinstance(code, CachedCode) and code.group_key is not None and code.group_key not in groups:
                load = functools.partial(self._load_group, code.row.group_id or "")
                try:
                    groups[code.group_key] = await self.groups.get(code.group_key, load)
                except Exception as exc:
                    groups[code.group_key] = exc
        return groups

    async def _load_group(self, group_id: str) -> GroupRow | None:
        key = self.keys.group(group_id)
        raw = await self._redis_get(key)
        if raw is not None and (last := self.groups.last(key)) is not None and last.source_hash == hash(raw):
            return last  # read again, unchanged: its codes keep what they prepared with it
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

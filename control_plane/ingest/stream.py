"""The ingest consumer group's view of the scan stream: read, claim from dead consumers, trim, measure, and
count failed attempts to store an entry.

Attempts decide that an entry is poison; the stream's own delivery count cannot, because it rises with
every re-read and every XAUTOCLAIM: a PostgreSQL outage (the worker re-reading its pending entries on every
retry) plus a restart would push good scans past any limit. The worker counts an attempt only once
PostgreSQL has handed it a connection, and takes it back when the attempt fails for an outage; what stays
counted are attempts that failed on the data, or that the worker did not survive (a crash, kill -9).
Entries read for the first time are not counted (that would cost a Redis write per scan): an entry that
kills the worker on its first try is re-read from the pending list and counted from then on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
import redis.exceptions

from shared.keys import INGEST_GROUP

Entry = tuple[bytes, dict[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class StreamStats:
    length: int
    pending: int  # read by some consumer, not yet acknowledged
    lag: int | None  # entries not yet read by the group (None when Redis cannot tell)


class ScanStream:
    def __init__(self, redis: aioredis.Redis, key: str, attempts_key: str, consumer: str) -> None:
        self.redis = redis
        # A client of its own over the same connections, whose XREADGROUP replies are made into entries here:
        # redis-py's own parser builds each entry's fields through generic Python, about a µs per scan.
        self.reader = aioredis.Redis(connection_pool=redis.connection_pool)
        self.reader.set_response_callback("XREADGROUP", _entries)
        self.key = key
        self.attempts_key = attempts_key
        self.consumer = consumer
        self.claim_cursor = "0-0"

    async def ensure_group(self) -> None:
        """Creates the group unless it exists. Asked first with XINFO, which Redis answers at its `maxmemory`
        where it refuses XGROUP CREATE — even of a group that exists — and the worker, which would free the
        memory, could never get past this."""
        try:
            if await self._group() is not None:
                return
        except redis.exceptions.ResponseError:  # no stream yet
            pass
        try:
            await self.redis.xgroup_create(self.key, INGEST_GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, cursor: str, count: int, block_ms: int | None) -> list[Entry]:
        entries: Any = await self.reader.xreadgroup(INGEST_GROUP, self.consumer, {self.key: cursor},
                                                     count=count, block=block_ms)
        return cast("list[Entry]", entries)

    async def claim_idle(self, min_idle_ms: int, count: int) -> list[Entry]:
        """Entries other consumers read but left unacknowledged for `min_idle_ms`.

        Walks the pending list with a cursor across calls, so a long list is claimed a batch at a time.
        """
        reply: Any = await self.redis.xautoclaim(self.key, INGEST_GROUP, self.consumer, min_idle_ms,
                                                 start_id=self.claim_cursor, count=count)
        self.claim_cursor = _text(reply[0])
        return [(entry_id, fields) for entry_id, fields in reply[1] if fields is not None]

    async def count_attempts(self, entry_ids: list[bytes]) -> list[int]:
        """One more attempt to store each entry; returns each entry's count, this attempt included."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id in entry_ids:
                pipe.hincrby(self.attempts_key, entry_id, 1)
            counts: list[int] = await pipe.execute()
        return counts

    async def forgive_attempts(self, entry_ids: list[bytes]) -> None:
        """The attempt failed for an outage, not because of the entries: it does not count."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id in entry_ids:
                pipe.hincrby(self.attempts_key, entry_id, -1)
            await pipe.execute()

    async def ack(self, ids: list[bytes], *, counted: bool = False) -> None:
        """Done with these entries (stored or dead-lettered): acknowledged, and their attempts forgotten when
        they were `counted`."""
        if not ids:
            return
        if not counted:
            await self.redis.xack(self.key, INGEST_GROUP, *ids)
            return
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xack(self.key, INGEST_GROUP, *ids)
                pipe.hdel(self.attempts_key, *ids)
                await pipe.execute()
        except redis.exceptions.OutOfMemoryError:  # at its maxmemory Redis queues nothing after MULTI
            await self.redis.xack(self.key, INGEST_GROUP, *ids)
            await self.redis.hdel(self.attempts_key, *ids)

    async def trim_acknowledged(self) -> int:
        """Deletes entries every consumer has acknowledged: below the oldest pending one, or, with none
        pending, up to the last one delivered. Never MAXLEN, which would drop unread or pending entries.

        The last delivered id is read *before* the pending list: another worker may read new entries between
        the two calls, and those lie after the id read first — read after, it would cover entries that are
        pending, not acknowledged, and trimming them would lose them."""
        group = await self._group()
        if group is None:
            return 0
        summary: Any = await self.redis.xpending(self.key, INGEST_GROUP)
        if summary["pending"]:
            floor = _text(summary["min"])
        else:
            floor = _next_id(_text(group["last-delivered-id"]))
        if floor == "0-0":
            return 0
        trimmed: int = await self.redis.xtrim(self.key, minid=floor, approximate=False)
        return trimmed

    async def stats(self) -> StreamStats:
        length = await self.redis.xlen(self.key)
        group = await self._group()
        if group is None:
            return StreamStats(length, 0, None)
        lag = group.get("lag")
        return StreamStats(length, int(group["pending"]), None if lag is None else int(lag))

    async def _group(self) -> dict[str, Any] | None:
        groups: Any = await self.redis.xinfo_groups(self.key)
        return next((g for g in groups if _text(g["name"]) == INGEST_GROUP), None)


def _entries(response: Any, **kwargs: Any) -> list[Entry]:
    """XREADGROUP's reply on one stream (RESP2: [[key, entries]], RESP3: {key: entries}) as entries; an entry
    deleted while pending comes back without fields."""
    if not response:
        return []
    [entries] = response.values() if isinstance(response, dict) else [stream[1] for stream in response]
    return [(entry_id, {fields[0]: fields[1]} if len(fields) == 2 else _pairs(fields)) if fields
            else (entry_id, fields) for entry_id, fields in entries]


def _pairs(fields: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(fields[::2], fields[1::2], strict=True))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _next_id(entry_id: str) -> str:
    millis, _, seq = entry_id.partition("-")
    return f"{millis}-{int(seq or 0) + 1}"

"""Follows the invalidation stream with plain XREAD (every edge process needs every message).

A message names a changed Redis key; the local entry of that name is dropped. When messages may have been
missed — the connection was lost, the stream vanished (FLUSHALL, a Redis without persistence restarted) or
was trimmed past the last id this process read — the whole local cache stops counting as fresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from edge.local_cache import LocalCache
from edge.redis_link import RedisLink
from shared.keys import INVALIDATION_FIELD

log = logging.getLogger(__name__)

BLOCK_MS = 1000  # an idle XREAD returns this often; a message wakes it at once
BATCH = 1000
PROBE_INTERVAL = 0.2  # seconds between PINGs while Redis is down
NO_ID = "0-0"
FAILURES = (OSError, TimeoutError, redis.exceptions.RedisError)


def _id(value: bytes | str) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class InvalidationFollower:
    def __init__(self, redis: aioredis.Redis, stream: str, caches: Sequence[LocalCache[Any]],
                 link: RedisLink) -> None:
        self.redis = redis  # a client of its own: XREAD BLOCK holds a connection
        self.stream = stream
        self.caches = caches
        self.link = link
        self.last_id: str | None = None  # None until the first successful contact
        self.ready = asyncio.Event()  # set once following (tests and start-up wait on it)

    async def run(self) -> None:
        while True:
            try:
                if self.last_id is None or not self.link.up:
                    await self._connect()
                await self._follow_once()
            except FAILURES as exc:
                self.link.mark_down(exc)
                await asyncio.sleep(PROBE_INTERVAL)
            except Exception:  # a bug must not stop the following for good: start over, forget freshness
                log.exception("invalidation follower failed; clearing the local cache")
                self._clear()
                await asyncio.sleep(PROBE_INTERVAL)

    async def _connect(self) -> None:
        info = await self._info()
        if self.last_id is None:
            self.last_id = info["last-generated-id"].decode() if info else NO_ID
        self._clear()  # whatever changed while we were away, we did not hear about it
        self.link.mark_up()
        self.ready.set()

    async def _info(self) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = await self.redis.xinfo_stream(self.stream)
        except redis.exceptions.ResponseError:  # no such key: nothing was ever invalidated
            return None
        return info

    async def _follow_once(self) -> None:
        since = self.last_id or NO_ID
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xread({self.stream: since}, count=BATCH, block=BLOCK_MS)
            pipe.xinfo_stream(self.stream)
            read, info = await pipe.execute(raise_on_error=False)
        if isinstance(read, Exception):
            raise read
        for _, entries in read or []:
            for entry_id, fields in entries:
                key = fields.get(INVALIDATION_FIELD, b"").decode()
                for cache in self.caches:
                    cache.drop(key)
                self.last_id = entry_id.decode()
        if self._missed(since, info):
            log.warning("invalidation stream lost or trimmed past %s; local cache no longer fresh", since)
            self._clear()
            if isinstance(info, Exception):
                self.last_id = NO_ID

    def _clear(self) -> None:
        for cache in self.caches:
            cache.clear()

    @staticmethod
    def _missed(since: str, info: dict[str, Any] | Exception) -> bool:
        if since == NO_ID:
            return False
        if isinstance(info, redis.exceptions.ResponseError):
            return True  # the stream is gone
        if isinstance(info, Exception):
            raise info
        first = info.get("first-entry")
        return first is not None and _id(first[0]) > _id(since)

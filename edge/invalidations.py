"""Follows the invalidation stream with plain XREAD (every edge process needs every message), in a thread
of its own with its own connection, so a saturated event loop does not delay it (docs/freshness.md).

A message names changed Redis keys; the local entries of those names are dropped. After every read the
follower confirms in Redis the stream position it has applied (its heartbeat too), and when it has seen
the end of the stream it opens the local cache's fence for half a lease, counted from the moment it sent
that read. When messages may have been missed — the connection was lost, the stream vanished (FLUSHALL, a
Redis without persistence restarted) or was trimmed past the last id this process read — the whole local
cache stops counting as fresh.

It also keeps this process's copy of the filter of existing codes (edge/code_filter.py): before an entry is
confirmed, the bits it names (field `f`) are set in the copy; when they cannot be, or a `*negative*` entry
names none, the filter is loaded again; the copy is forgotten whenever messages may have been missed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
import redis.exceptions

from edge.code_filter import CodeFilter
from edge.local_cache import Fence, LocalCache
from edge.metrics import Buckets
from shared.edge_registry import CONFIRM, stream_id
from shared.keys import EDGE_LEASE, FILTER_DELTA_FIELD, INVALIDATION_FIELD, NEGATIVE_ENTRIES, RedisKeys

log = logging.getLogger(__name__)

# An idle XREAD returns this often, and the fence is counted from when it was sent: well under half a lease.
BLOCK_MS = 100
BATCH = 1000
PROBE_INTERVAL = 0.2  # seconds between attempts while Redis is down
# While following, the follower tells the event loop this often that Redis answers: a link marked down by a
# failure on another connection alone (the recorder's batch timing out, a reset) comes back, and the journal
# is replayed, even though this connection never broke.
ANSWERING_INTERVAL = 1.0
SOCKET_TIMEOUT = BLOCK_MS / 1000 + 1.0  # XREAD BLOCK holds its connection: the timeout must outlast the block
NO_ID = "0-0"
FAILURES = (OSError, TimeoutError, redis.exceptions.RedisError)
LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

Notify = Callable[[BaseException | None], None]  # None: Redis answered again; else why it did not


class InvalidationFollower:
    def __init__(self, redis_url: str, keys: RedisKeys, caches: Sequence[LocalCache[Any]], fence: Fence,
                 edge_id: str, notify: Notify, lease: float = EDGE_LEASE, *, confirm: bool = True,
                 code_filter: CodeFilter | None = None) -> None:
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=1.0)
        self.keys = keys
        self.caches = caches
        self.fence = fence
        self.edge_id = edge_id
        self.notify = notify
        self.lease = lease
        self.confirms = confirm  # False: follow without registering or fencing (to measure the cost)
        self.code_filter = code_filter
        self.last_id: str | None = None  # None until the first successful contact
        self.caught_up_at = 0.0  # monotonic time of sending the last read that reached the stream's end
        self.lag = Buckets(LAG_BUCKETS)  # seconds from an invalidation's XADD to its drop here
        self.ready = threading.Event()  # set once following (start-up waits on it)
        self._connected = False
        self._confirm = self.redis.register_script(CONFIRM)
        self._stop = threading.Event()
        self._answering_told = 0.0  # monotonic time after which the follower says again that Redis answers
        self._thread = threading.Thread(target=self._run, name="invalidation-follower", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop following and leave the registry, so that no write waits for this process any more."""
        self._stop.set()
        self._thread.join(SOCKET_TIMEOUT + 1.0)
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(self.keys.edge_leases, self.edge_id)
                pipe.hdel(self.keys.edge_positions, self.edge_id)
                pipe.execute()
        except FAILURES as exc:
            log.warning("could not leave the edge registry (the lease ends it): %r", exc)
        self.redis.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._connected:
                    self._connect()
                self._follow_once()
                if (now := time.monotonic()) >= self._answering_told:
                    self._answering_told = now + ANSWERING_INTERVAL
                    self.notify(None)
            except FAILURES as exc:
                self._lost(exc)
            except Exception as exc:  # a bug must not stop the following for good: start over, forget freshness
                log.exception("invalidation follower failed; clearing the local cache")
                self._lost(exc)

    def _lost(self, exc: BaseException) -> None:
        self._connected = False
        self.notify(exc)
        self._stop.wait(PROBE_INTERVAL)

    def _connect(self) -> None:
        info = self._info()
        if self.last_id is None:
            self.last_id = info["last-generated-id"].decode() if info else NO_ID
        self._clear()  # whatever changed while we were away, we did not hear about it
        self._connected = True
        self.notify(None)
        self.ready.set()

    def _info(self) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = self.redis.xinfo_stream(self.keys.invalidations)
        except redis.exceptions.ResponseError:  # no such key: nothing was ever invalidated
            return None
        return info

    def _follow_once(self) -> None:
        since = self.last_id or NO_ID
        sent = time.monotonic()
        with self.redis.pipeline(transaction=False) as pipe:
            if self.confirms:  # what was applied so far rides with the next read: one round trip
                self._confirm(keys=[self.keys.edge_positions, self.keys.edge_leases],
                              args=[self.edge_id, since, int(self.lease * 1000)], client=pipe)
            pipe.xread({self.keys.invalidations: since}, count=BATCH, block=BLOCK_MS)
            pipe.xinfo_stream(self.keys.invalidations)
            *confirmed, read, info = pipe.execute(raise_on_error=False)
        for failed in (*confirmed, read):
            if isinstance(failed, Exception):
                raise failed
        entries = read[0][1] if read else []
        for entry_id, fields in entries:
            self._apply(fields.get(INVALIDATION_FIELD, b"").decode(), fields.get(FILTER_DELTA_FIELD))
            self.last_id = entry_id.decode()
            self.lag.observe(max(0.0, time.time() - stream_id(entry_id)[0] / 1000))
        if self._missed(since, info):
            log.warning("invalidation stream lost or trimmed past %s; local cache no longer fresh", since)
            self._clear()
            if isinstance(info, Exception):
                self.last_id = NO_ID
            elif self.last_id == NO_ID and info["length"] == 0:  # trimmed empty: follow on after its last id
                self.last_id = info["last-generated-id"].decode()
        if self.code_filter is not None and self.code_filter.wants_load():
            self.code_filter.load(self.redis)  # before confirming: the write that created codes waits for it
        if len(entries) < BATCH:  # the end of the stream, as of a moment after `sent`
            self.caught_up_at = sent
            if self.confirms:
                self.fence.until = sent + self.lease / 2
        if entries and self.confirms:  # confirm at once: a write is waiting for it
            self._confirm(keys=[self.keys.edge_positions, self.keys.edge_leases],
                          args=[self.edge_id, self.last_id or NO_ID, int(self.lease * 1000)])

    def _apply(self, named: str, filter_delta: bytes | None) -> None:
        """Drop the named entries; bring the filter up to date with the codes' bits the entry names."""
        keys = named.split("\n")
        if (self.code_filter is not None and (filter_delta is not None or NEGATIVE_ENTRIES in keys)
                and not self.code_filter.apply(filter_delta)):
            self.code_filter.forget()  # loaded again before this entry is confirmed
        for key in keys:
            for cache in self.caches:
                if key == NEGATIVE_ENTRIES:
                    cache.drop_negative()
                else:
                    cache.drop(key)

    def _clear(self) -> None:
        if self.code_filter is not None:
            self.code_filter.forget()
        for cache in self.caches:
            cache.clear()

    @staticmethod
    def _missed(since: str, info: dict[str, Any] | Exception) -> bool:
        if since == NO_ID:  # read from its start (it was absent, or lost): entries were missed if any were
            # trimmed off it since it was created (Redis 7 counts them; an older one does not say)
            if not isinstance(info, dict) or info.get("entries-added") is None:
                return False
            return int(info["entries-added"]) > int(info["length"])
        if isinstance(info, redis.exceptions.ResponseError):
            return True  # the stream is gone
        if isinstance(info, Exception):
            raise info
        first = info.get("first-entry")
        return first is not None and stream_id(first[0]) > stream_id(since)

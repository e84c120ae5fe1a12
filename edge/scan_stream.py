"""The edge's own Redis connections, spoken in RESP by hand: the scan recorder's (one batch of scans per
command), and the one that reads code rows missing from the local cache (one MGET per batch of misses).

Every scan waits for its batch's acknowledgement, so the batch's round trip is the hot path's only I/O. With
redis-py each batch cost about 250 µs of the process's CPU (connection pool, streams, coroutine frames) and
each scan 4 µs more (packing its argument): as much as the rest of a scan. Here a batch is one
`transport.write` of bytes joined from the events and one reply read by hiredis (the parser redis-py uses
too) on a connection of its own, so a batch of 64 costs the process about a tenth of that. Reading a
batch of code rows with one MGET here instead of through redis-py saved about 11 k of a first touch's
255 k instructions (BENCHMARKS.md, 2026-12-01 "misses").

Only plain `redis://` and `unix://` URLs are spoken to directly; any other (TLS) goes through redis-py.
Failures raise what redis-py would (`redis.exceptions.ConnectionError`, `ResponseError`, `TimeoutError`), and
a failed or timed-out connection is dropped: the next batch connects again.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import hiredis
import redis.asyncio as aioredis
import redis.exceptions
from redis.connection import UnixDomainSocketConnection, parse_url

# One command per batch instead of one per scan, and all or nothing (Redis runs a script atomically). ARGV[1]
# is the stream's limit in entries (0: none): a batch that would pass it is refused whole (-1). ARGV[3] is the
# number of events, ARGV[4] the events joined by newlines — an event is one line of JSON, as in the journal —
# so that the edge frames one argument per batch instead of one per scan (BENCHMARKS.md, 2026-11-30 "edge-cpu").
# The lines are counted before anything is written, so a malformed batch is refused whole.
XADD_ALL = """
local limit, count, events = tonumber(ARGV[1]), tonumber(ARGV[3]), ARGV[4]
local stops, start = {}, 1
for i = 1, count - 1 do
  stops[i] = string.find(events, '\\n', start, true)
  if not stops[i] then return redis.error_reply('fewer lines than events') end
  start = stops[i] + 1
end
if string.find(events, '\\n', start, true) then return redis.error_reply('more lines than events') end
stops[count] = #events + 1
if limit > 0 and redis.call('XLEN', KEYS[1]) + count > limit then return -1 end
start = 1
for i = 1, count do
  redis.call('XADD', KEYS[1], '*', ARGV[2], string.sub(events, start, stops[i] - 1))
  start = stops[i] + 1
end
return count
"""


def _bulk(arg: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(arg), arg)


def _command(*args: bytes) -> bytes:
    return b"".join([b"*%d\r\n" % len(args), *map(_bulk, args)])


@functools.lru_cache(maxsize=16)
def _xadd_all_head(stream: bytes, limit: int, field: bytes) -> bytes:
    """`EVAL script 1 stream limit field`: the same for every batch of a recorder, so built once."""
    return b"".join([b"*8\r\n", *map(_bulk, (b"EVAL", XADD_ALL.encode(), b"1", stream, b"%d" % limit, field))])


def xadd_all_command(stream: bytes, limit: int, field: bytes, events: list[bytes]) -> bytes:
    """EVAL of XADD_ALL for `events`, in RESP."""
    lines = b"\n".join(events)
    count = b"%d" % len(events)
    return b"".join((_xadd_all_head(stream, limit, field), b"$%d\r\n%s\r\n$%d\r\n" % (len(count), count, len(lines)),
                     lines, b"\r\n"))




Replied = Callable[[Any], None]  # called with the reply: a value, or the exception it stands for


class _Connection(asyncio.Protocol):
    """Replies in request order (RESP), each to the future or callback of its request."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: deque[asyncio.Future[Any] | Replied] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False
        # Kept: `asyncio.get_running_loop()` makes a getpid() system call (it checks for a fork), per batch.
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if self.waiting:
                done = self.waiting.popleft()
                if not isinstance(done, asyncio.Future):
                    done(reply)  # in this loop turn: the recorder answers the batch's requests from here
                elif not done.done():
                    done.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        error = exc if isinstance(exc, redis.exceptions.RedisError) else \
            redis.exceptions.ConnectionError(f"scan stream connection lost: {exc!r}")
        while self.waiting:
            done = self.waiting.popleft()
            if not isinstance(done, asyncio.Future):
                done(error)
            elif not done.done():
                done.set_exception(error)

    def send(self, payload: bytes) -> asyncio.Future[Any]:
        assert self.transport is not None
        done: asyncio.Future[Any] = self.loop.create_future()
        self.waiting.append(done)
        self.transport.write(payload)
        return done

    def send_nowait(self, payload: bytes, replied: Replied) -> None:
        assert self.transport is not None
        self.waiting.append(replied)
        self.transport.write(payload)

    def close(self, error: redis.exceptions.RedisError | None = None) -> None:
        self.lost = True  # no further request on it, even before the loop reports it closed
        if self.transport is not None:
            self.transport.abort()
        self.connection_lost(error)  # the callbacks waiting hear of it now, not after the loop's next turn


class DirectRedis:
    """A Redis connection of the edge's own, spoken in RESP (`_call` sends one command and awaits its reply);
    `mget` for the batch reads of code rows (edge/code_reads.py), on a connection apart from the recorder's so
    that a read never waits behind the scan batches in flight."""

    def __init__(self, url: str, timeout: float, fallback: aioredis.Redis) -> None:
        self.timeout = timeout
        self.fallback = fallback  # redis-py, for what is not spoken directly (TLS URLs)
        options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        self._path: str | None = options.get("path")
        self._address = (options.get("host", "localhost"), options.get("port", 6379))
        self._auth = [a.encode() for a in (options.get("username"), options.get("password")) if a is not None]
        self._db = options.get("db", 0)
        self._direct = options.get("connection_class") in (None, UnixDomainSocketConnection)
        self._connection: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None

    async def mget(self, keys: list[str]) -> list[bytes | str | None]:
        if not self._direct:
            values: list[bytes | str | None] = await self.fallback.mget(keys)
            return values
        reply = await self._call(_command(b"MGET", *(key.encode() for key in keys)))
        if isinstance(reply, Exception):
            raise redis.exceptions.ResponseError(str(reply))
        return cast(list[bytes | str | None], reply)

    async def _call(self, payload: bytes) -> Any:
        connection = await self._connected()
        try:
            async with asyncio.timeout(self.timeout):
                return await connection.send(payload)
        except BaseException:
            connection.close()  # a reply still on its way must not answer the next request
            raise

    async def _connected(self) -> _Connection:
        connection = self._connection
        if connection is not None and not connection.lost:
            return connection
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        try:
            return await asyncio.shield(self._connecting)
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                if self._path is not None:
                    _, connection = await loop.create_unix_connection(_Connection, self._path)
                else:
                    _, connection = await loop.create_connection(_Connection, *self._address)
                for command in ([b"AUTH", *self._auth] if self._auth else None,
                                [b"SELECT", str(self._db).encode()] if self._db else None):
                    if command is not None:
                        reply = await connection.send(_command(*command))
                        if isinstance(reply, Exception):
                            connection.close()
                            raise redis.exceptions.AuthenticationError(str(reply))
        except OSError as exc:
            raise redis.exceptions.ConnectionError(f"cannot connect to Redis for the scan stream: {exc!r}") from exc
        self._connection = connection
        return connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class ScanStream(DirectRedis):
    """`xadd_all(stream, limit, field, events)`: every event in one EVAL, once Redis has acknowledged them all;
    returns the script's answer (the number stored, or -1 when the stream's limit refused the batch)."""

    def __init__(self, url: str, timeout: float, fallback: aioredis.Redis) -> None:
        super().__init__(url, timeout, fallback)
        self._script = fallback.register_script(XADD_ALL)

    async def xadd_all(self, stream: str, limit: int, field: bytes, events: list[bytes]) -> int:
        if not self._direct:
            stored: int = await self._script(keys=[stream], args=[limit, field, len(events), b"\n".join(events)])
            return stored
        reply = await self._call(xadd_all_command(stream.encode(), limit, field, events))
        if isinstance(reply, Exception):
            raise redis.exceptions.ResponseError(str(reply))
        return int(reply)

    def send_nowait(self, stream: str, limit: int, field: bytes, events: list[bytes],
                    replied: Callable[[int | BaseException], None]) -> bool:
        """`xadd_all` without awaiting: sends now on the open connection and returns True, `replied` getting the
        script's answer (or the failure) later; replies come in order, so several batches can be in flight.
        False, having sent nothing, when there is no open direct connection (then use `xadd_all`)."""
        connection = self._connection
        if not self._direct or connection is None or connection.lost:
            return False
        loop = connection.loop

        def reply(value: Any) -> None:
            timer.cancel()
            if isinstance(value, redis.exceptions.RedisError):
                replied(value)
            elif isinstance(value, Exception):  # an error reply (hiredis gives it as a value)
                replied(redis.exceptions.ResponseError(str(value)))
            else:
                replied(int(value))

        def expired() -> None:  # as `xadd_all`'s timeout: the connection is dropped, every waiter fails
            if not connection.lost:
                connection.close(redis.exceptions.TimeoutError(f"no reply to a scan batch in {self.timeout} s"))

        timer = loop.call_later(self.timeout, expired)
        connection.send_nowait(xadd_all_command(stream.encode(), limit, field, events), reply)
        return True

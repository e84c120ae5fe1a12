"""One HTTP/1.1 connection of the edge's protocol server: httptools parses, `ScanHandler` answers.

The connection owns what makes HTTP/1.1 correct and bounded (docs/edge.md): responses leave in request
order whatever order they are ready in (pipelining), one `transport.write` per batch of ready responses,
the 8 KiB head limit (431), bounded bodies (413), malformed input (400 and close), HTTP/1.0 and
`Connection: close`, `Expect: 100-continue`, and reading paused while too many answers are pending or the
client does not read what we write (backpressure). Timeouts are enforced by the server's sweep, from the
deadline each connection keeps.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from typing import TYPE_CHECKING, cast

import httptools

from edge import responses
from edge.client_address import unmapped
from edge.password_form import FORM_LIMIT

if TYPE_CHECKING:
    from edge.server import EdgeServer

log = logging.getLogger(__name__)

MAX_HEAD = 8192  # request line + headers (docs/api.md §3.4)
MAX_BODY = 64 * 1024  # the edge takes no uploads; a password form is a few hundred bytes
MAX_PENDING = 32  # answers waiting in one connection before we stop reading its requests
LINGER = 2.0  # seconds we keep reading (and discarding) after our last answer, so it is not lost to a reset
_HEAD_END = b"\r\n\r\n"


def _after_last_head_end(data: bytes) -> int:
    """The bytes of a read after the last head that ended in it (all of them if none did)."""
    end = data.rfind(_HEAD_END)
    return len(data) - (end + len(_HEAD_END) if end >= 0 else 0)


class _Rejected(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


class Slot:
    """A place in the connection's answer order; `data` is None until the answer is ready."""

    __slots__ = ("close", "data")

    def __init__(self, close: bool) -> None:
        self.data: bytes | None = None
        self.close = close  # close the connection once this answer is written


class HttpConnection(asyncio.Protocol):
    def __init__(self, server: EdgeServer) -> None:
        self.server = server
        self.loop = server.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.slots: deque[Slot] = deque()
        self.deadline = math.inf  # the sweep closes the connection past it
        self.done = False  # no further request will be read (closing, or closed)
        self.reading = True
        self.writable = True
        # the request being parsed
        self.in_request = False
        self.head_complete = False
        self.url = b""
        self.method = b""  # read once the head is complete
        self.headers: dict[bytes, bytes] = {}
        self.counting = False  # this read is longer than MAX_HEAD: the heads that begin in it are counted
        self.head_bytes = 0  # what the parser reported of the head so far, while counting
        self.partial_head = 0  # bytes of a head not yet complete, counted from the raw data
        self.head_tail = b""  # the last bytes of that head, in which its end may begin
        self.body_bytes = 0
        self.after_head = 0  # raw bytes read after a head while its request is incomplete (body, trailers)
        self.after_head_of = -1  # the request (`requests` before it) they were counted for
        self.body = b""  # kept for POST only (a password form), at most FORM_LIMIT + 1 bytes
        self.keep_body = False
        self.started = 0.0  # loop time at which the request's first byte was parsed
        self.completed_in_chunk = False
        self.client_eof = False
        self.requests = 0  # read on this connection so far
        self.lingering = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        peer = transport.get_extra_info("peername")
        self.peer = unmapped(peer[0]) if peer else ""  # an IPv4 client of a `[::]` socket is an IPv4 client
        self.deadline = self.server.now + self.server.header_timeout
        self.server.opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.done = True
        self.transport = None
        self.slots.clear()
        # The parser holds this connection's callbacks: without the parser, the connection is freed by its
        # reference count. A cycle would wait for a collection of everything, since a connection that lived
        # through a collection is frozen out of the others (edge/heap.py).
        del self.parser
        self.server.closed(self)

    def pause_writing(self) -> None:
        self.writable = False
        self._pause_reading()

    def resume_writing(self) -> None:
        self.writable = True
        self._maybe_resume_reading()

    def eof_received(self) -> bool:
        """The client sent its last byte: answer what it asked, then close (a half-closed client still reads)."""
        self.client_eof = True
        self.done = True
        if self.slots:
            self.slots[-1].close = True
            return True  # keep the transport open for our answers
        return False

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        self.completed_in_chunk = False
        # A head longer than MAX_HEAD is refused (431). One that begins and ends in this read is at most as long
        # as the read: only a read longer than MAX_HEAD needs its heads counted, which costs a few operations
        # per header. A head begun in earlier reads is measured from the raw bytes.
        self.counting = len(data) > MAX_HEAD
        if self.partial_head and self._head_too_long(data):
            return self._reject(431)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if not isinstance(cause, _Rejected):
                raise
            if cause.status:
                self._reject(cause.status)
        except httptools.HttpParserUpgrade:
            self.done = True  # we speak HTTP/1.1 only: answer what was asked, then close
            self._close_after_answers()
        except httptools.HttpParserError:
            self._reject(400)
        else:
            if self.in_request:  # a request continues in the next read: bound what the parser keeps of it
                if not self.head_complete:
                    self._check_partial_head(data)
                else:
                    self._check_after_head(data)
        if self.in_request or self.completed_in_chunk:  # progress; empty lines before a request are not
            self._set_deadline()

    def _check_partial_head(self, data: bytes) -> None:
        """A head that spans several reads is buffered by the parser: bound it before it is complete."""
        if self.completed_in_chunk or not self.partial_head:  # the head began in this read
            self.partial_head = _after_last_head_end(data)
        else:
            self.partial_head += len(data)
        self.head_tail = data[-3:] if self.partial_head >= 3 else b""
        if self.partial_head > MAX_HEAD:
            self._reject(431)

    def _check_after_head(self, data: bytes) -> None:
        """A body or trailer section that spans several reads. `on_body` counts the body, but the trailer fields
        after a chunked body's last chunk are buffered whole by the parser, line by line, and reported only at
        each line's end: every raw byte after the head counts against MAX_BODY + MAX_HEAD (docs/edge.md)."""
        if self.after_head_of != self.requests:  # the head ended in this read
            self.after_head_of = self.requests
            self.after_head = _after_last_head_end(data)
        else:
            self.after_head += len(data)
        if self.after_head > MAX_BODY + MAX_HEAD:
            self._reject(413)

    def _head_too_long(self, data: bytes) -> bool:
        """Whether the head begun in earlier reads, if it ends in this one, is longer than MAX_HEAD."""
        end = (self.head_tail + data).find(_HEAD_END)
        return end >= 0 and self.partial_head + end + len(_HEAD_END) - len(self.head_tail) > MAX_HEAD

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.done:
            raise _Rejected(0)  # pipelined after a request that closes the connection: not read
        self.started = self.server.now
        self.in_request = True
        self.head_complete = False
        self.url = b""
        self.headers = {}
        self.head_bytes = 0  # the body's counters are zero: `on_message_complete` resets them after a body

    def on_url(self, url: bytes) -> None:
        self.url += url
        if self.counting:
            self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_complete:  # a trailer field, after a chunked body: not a header (RFC 9110 §6.5.1)
            return  # behind a proxy, a client's trailer X-Forwarded-For would choose its own address
        if self.counting:
            self._count(len(name) + len(value) + 4)
        name = name.lower()
        headers = self.headers
        headers[name] = self._repeated(name, headers[name], value) if name in headers else value

    def _count(self, length: int) -> None:
        self.head_bytes += length
        if self.head_bytes > MAX_HEAD:
            raise _Rejected(431)

    def _repeated(self, name: bytes, first: bytes, value: bytes) -> bytes:
        """A header sent twice: a second Host is refused in HTTP/1.1 (RFC 9112 §3.2); X-Forwarded-For's
        lines form one list (RFC 9110 §5.3, docs/api.md §3.4); any other header keeps its last value."""
        if name == b"host" and self.parser.get_http_version() == "1.1":
            raise _Rejected(400)
        return first + b"," + value if name == b"x-forwarded-for" else value

    def on_headers_complete(self) -> None:
        self.head_complete = True
        self.partial_head = 0
        self.method = self.parser.get_method()
        self.keep_body = self.method == b"POST"
        if b"host" not in self.headers and self.parser.get_http_version() == "1.1":
            raise _Rejected(400)  # RFC 9112 §3.2: exactly one Host in HTTP/1.1 (a second: `_repeated`)
        expect = self.headers.get(b"expect")
        if expect is not None:
            if expect.lower() != b"100-continue":
                raise _Rejected(417)
            if not self.slots and self.transport is not None:
                self.transport.write(responses.CONTINUE)  # in order: nothing else is pending

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)  # discarded, except a password form's first bytes
        if self.body_bytes > MAX_BODY:
            raise _Rejected(413)
        if self.keep_body and len(self.body) <= FORM_LIMIT:
            self.body += body[:FORM_LIMIT + 1 - len(self.body)]

    def on_message_complete(self) -> None:
        self.requests += 1
        self.in_request = False
        self.completed_in_chunk = True
        keep_alive = self.parser.should_keep_alive() and not self.server.draining
        slot = Slot(not keep_alive)  # positional: a keyword argument costs a dict per request
        self.slots.append(slot)
        if not keep_alive:
            self.done = True
        try:
            self.server.handler.handle(self, slot, self.method, self.url, self.headers, self.body)
        except Exception:  # a bug costs its own request (500), not the connection and the requests before it
            self.server.handler.failed(self, slot)
        if self.body_bytes:
            self.body_bytes = 0
            self.body = b""
        if len(self.slots) >= MAX_PENDING:
            self._pause_reading()

    # answers

    def fill(self, slot: Slot, data: bytes) -> None:
        slot.data = data
        slots = self.slots
        if not slots or slots[0] is not slot:
            return  # written once the answers before it are ready
        if len(slots) == 1 and not slot.close and self.reading and not self.done and not self.server.draining \
                and self.transport is not None:  # the usual case: the only answer pending, connection stays open
            slots.popleft()
            self.transport.write(data)
            self.deadline = self.server.now + self.server.keepalive_timeout  # `_set_deadline`, inlined
            return
        self._flush()

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        ready = []
        close = False
        while self.slots and (data := self.slots[0].data) is not None:
            ready.append(data)
            close = self.slots.popleft().close
            if close:
                break
        if ready:
            transport.write(ready[0] if len(ready) == 1 else b"".join(ready))
        if close:
            self.done = True
            self.slots.clear()
            self._linger(transport)
            return
        if not self.slots:
            if self.done or self.server.draining and not self.in_request:
                self.done = True  # read nothing more: a request read now would be recorded and never answered
                self._linger(transport)
                return
            self._set_deadline()
        self._maybe_resume_reading()

    def _linger(self, transport: asyncio.Transport) -> None:
        """Close our side only: a client still sending would otherwise get a reset, and a reset can discard
        our last answer before the client has read it. The sweep closes the connection after LINGER."""
        if transport.is_closing() or self.lingering:
            return
        self.lingering = True
        if transport.can_write_eof() and not self.client_eof:
            transport.write_eof()
            self.deadline = self.loop.time() + LINGER
        else:
            transport.close()

    def _reject(self, status: int) -> None:
        """Answer a request we cannot serve (after those before it), then close."""
        if self.done:  # an earlier answer closes the connection: bytes after it are not read, nor answered
            return
        self.done = True
        self.server.handler.rejected(status)
        slot = Slot(close=True)
        self.slots.append(slot)
        self.fill(slot, responses.error(status).encode(self.server.date, responses.CLOSE))

    def _close_after_answers(self) -> None:
        if not self.slots and self.transport is not None:
            self.transport.close()
        elif self.slots:
            self.slots[-1].close = True

    # flow control and timeouts

    def _pause_reading(self) -> None:
        if self.reading and self.transport is not None:
            self.reading = False
            self.transport.pause_reading()

    def _maybe_resume_reading(self) -> None:
        if not self.reading and self.writable and len(self.slots) < MAX_PENDING // 2 and self.transport is not None \
                and not self.transport.is_closing():
            self.reading = True
            self.transport.resume_reading()

    def _set_deadline(self) -> None:
        if self.done:
            return  # closing: the deadline is the linger's
        if self.in_request:  # more bytes do not buy more time: a slow client cannot hold the connection
            self.deadline = self.started + self.server.header_timeout
        elif self.slots:
            self.deadline = math.inf  # waiting for us, not for the client
        else:
            self.deadline = self.server.now + self.server.keepalive_timeout

    def expire(self, now: float) -> bool:
        """Called by the sweep: close a connection whose client kept us waiting too long."""
        if now < self.deadline or self.transport is None:
            return False
        self.done = True
        self.transport.close()
        return True

    def drain(self) -> None:
        """The process is stopping: finish the answers in flight, read nothing new, then close.

        A connection accepted but not yet read from is kept: its client has probably sent a request
        already, which is answered (with `connection: close`) within the header timeout."""
        if self.slots:
            self.slots[-1].close = True
            self.done = True  # what the client sends after this is neither read nor recorded: it retries it
        elif not self.in_request and self.requests and self.transport is not None:
            self.done = True
            self.transport.close()

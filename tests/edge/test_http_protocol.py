"""docs/api.md §3.4 on the wire: the protocol server behaves as a standard HTTP/1.1 server does.

Requests are written by h11 or by hand (raw sockets); answers are parsed by h11, independently of the
parser the server uses.
"""

from __future__ import annotations

import asyncio
import gc
import re
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from edge.app import EdgeApp
from edge.server import EdgeServer
from shared.keys import RedisKeys
from shared.settings import EdgeSettings
from tests.conftest import KeyFactory
from tests.edge.conftest import address, protocol_server
from tests.edge.raw_http import Responses, closed_by_server, connected, read_until_closed, request_bytes
from tests.edge.test_scan import make_code, stream_events


@asynccontextmanager
async def edge_on_socket(env: dict[str, str], **overrides: str) -> AsyncIterator[tuple[EdgeApp, EdgeServer]]:
    app = EdgeApp(EdgeSettings.from_env({**env, **overrides}))
    await app.startup()
    try:
        async with protocol_server(app) as server:
            yield app, server
    finally:
        await app.shutdown()


Connect = Callable[[tuple[str, int]], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Opens client connections, all closed at the end of the test."""
    async with AsyncExitStack() as stack:
        async def open_connection(address: tuple[str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await stack.enter_async_context(connected(address))

        yield open_connection


@pytest.fixture
async def served(env: dict[str, str]) -> AsyncIterator[tuple[EdgeApp, EdgeServer]]:
    async with edge_on_socket(env) as both:
        yield both


async def two_codes(api: httpx.AsyncClient, make_key: KeyFactory) -> tuple[str, str]:
    key = await make_key()
    first = await make_code(api, key, destination={"type": "url", "url": "https://example.com/one"})
    second = await make_code(api, key, destination={"type": "url", "url": "https://example.com/two"})
    return first["slug"], second["slug"]


async def test_keep_alive_and_pipelined_answers_come_in_request_order(
        connect: Connect,
        api: httpx.AsyncClient, make_key: KeyFactory, served: tuple[EdgeApp, EdgeServer]) -> None:
    one, two = await two_codes(api, make_key)
    reader, writer = await connect(address(served[1]))
    responses = Responses(reader)
    writer.write(request_bytes("GET", f"/{one}"))
    assert (await responses.next()).headers["location"] == "https://example.com/one"  # now cached locally
    # The first is a cache miss (slow), the next two are answered at once: the order still holds.
    writer.write(request_bytes("GET", f"/{two}?a=1") + request_bytes("GET", "/healthz")
                 + request_bytes("HEAD", f"/{one}") + request_bytes("GET", "/nope-nope"))
    answers = [await responses.next(), await responses.next(), await responses.next("HEAD"),
               await responses.next()]
    assert [a.status for a in answers] == [302, 200, 302, 404]
    assert answers[0].headers["location"] == "https://example.com/two?a=1"
    assert answers[2].headers["location"] == "https://example.com/one" and answers[2].body == b""
    assert b"does not exist" in answers[3].body


async def test_http_1_0_and_connection_close_end_the_connection_after_the_answer(
        connect: Connect,
        served: tuple[EdgeApp, EdgeServer]) -> None:
    for request in (b"GET /healthz HTTP/1.0\r\n\r\n",
                    request_bytes("GET", "/healthz", headers=[("Connection", "close")])):
        reader, writer = await connect(address(served[1]))
        writer.write(request)
        raw = await read_until_closed(reader)
        assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close\r\n" in raw
        assert raw.endswith(b'{"status":"ok"}')
    

async def test_a_closed_connection_is_freed_without_the_cycle_collector(
        connect: Connect, served: tuple[EdgeApp, EdgeServer]) -> None:
    """The edge freezes what lives through a collection out of later ones (edge/heap.py): a connection left in
    a reference cycle when it closes would stay in memory until the next collection of everything."""
    server = served[1]
    reader, writer = await connect(address(server))
    writer.write(request_bytes("GET", "/healthz"))
    assert (await Responses(reader).next()).status == 200
    (connection,) = server.connections
    freed = asyncio.Event()
    weakref.finalize(connection, freed.set)
    del connection
    gc.disable()
    try:
        writer.close()
        await asyncio.wait_for(freed.wait(), 5)
    finally:
        gc.enable()


async def test_http_1_0_keep_alive_stays_open(
        connect: Connect, served: tuple[EdgeApp, EdgeServer]) -> None:
    reader, writer = await connect(address(served[1]))
    responses = Responses(reader)
    for _ in range(2):
        writer.write(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert (await responses.next()).status == 200


async def test_head_has_the_get_headers_and_no_body(
        connect: Connect, served: tuple[EdgeApp, EdgeServer]) -> None:
    reader, writer = await connect(address(served[1]))
    responses = Responses(reader)
    writer.write(request_bytes("HEAD", "/unknown-slug") + request_bytes("GET", "/unknown-slug"))
    head, get = await responses.next("HEAD"), await responses.next()
    assert head.status == get.status == 404
    assert head.body == b"" and int(head.headers["content-length"]) == len(get.body) > 0


async def test_expect_100_continue_and_bodies_are_read_past(
        connect: Connect, served: tuple[EdgeApp, EdgeServer]) -> None:
    reader, writer = await connect(address(served[1]))
    writer.write(b"POST /some-slug HTTP/1.1\r\nHost: qr.test\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"x")
    responses = Responses(reader)
    assert (await responses.next()).status == 404  # no such code (a POST is for a code's password form)
    # A GET with a body: the body is discarded, and the next request on the connection is read as one.
    writer.write(request_bytes("GET", "/healthz", body=b"GET /metrics HTTP/1.1\r\n\r\n")
                 + request_bytes("GET", "/readyz"))
    first, second = await responses.next(), await responses.next()
    assert first.body == b'{"status":"ok"}' and second.status == 200 and b"ready" in second.body


@pytest.mark.parametrize("request_data", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: qr.test\r\nContent-Length: nope\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\nHost: qr.test\r\n\r\n",
])
async def test_malformed_requests_get_400_and_a_closed_connection(
        connect: Connect,
        served: tuple[EdgeApp, EdgeServer], request_data: bytes) -> None:
    reader, writer = await connect(address(served[1]))
    writer.write(request_data)
    raw = await read_until_closed(reader)
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n"), raw


async def test_a_head_over_8_kib_gets_431_in_one_piece_or_many(
        connect: Connect, served: tuple[EdgeApp, EdgeServer]) -> None:
    fits = request_bytes("GET", "/healthz", headers=[("X-Pad", "p" * 7000)])
    too_big = request_bytes("GET", "/healthz", headers=[("X-Pad", "p" * 8200)])
    reader, writer = await connect(address(served[1]))
    writer.write(fits)
    assert (await Responses(reader).next()).status == 200
    writer.write(too_big)
    assert (await read_until_closed(reader)).startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    reader, writer = await connect(address(served[1]))
    writer.write(b"GET /x HTTP/1.1\r\nHost: ")
    for _ in range(12):  # a huge Host, arriving 1 KiB at a time: refused before it is complete
        await asyncio.sleep(0.01)
        writer.write(b"h" * 1024)
    assert (await read_until_closed(reader)).startswith(b"HTTP/1.1 431 ")


@pytest.mark.parametrize(("pad", "status"), [(7900, 200), (8300, 431)])
async def test_a_head_in_two_reads_is_measured_whole(
        connect: Connect, served: tuple[EdgeApp, EdgeServer], pad: int, status: int) -> None:
    """The limit holds for a head whose last read completes it: neither read alone passes 8 KiB, and one
    header is split between them (the parser reports it only after the second read)."""
    head = request_bytes("GET", "/healthz", headers=[("X-Pad", "p" * (pad - 200)), ("X-More", "m" * 150)])
    reader, writer = await connect(address(served[1]))
    cut = len(head) - 100  # inside X-More
    writer.write(head[:cut])
    await asyncio.sleep(0.05)  # two reads, not one
    writer.write(head[cut:])
    if status == 200:
        assert (await Responses(reader).next()).status == 200
    else:
        assert (await read_until_closed(reader)).startswith(b"HTTP/1.1 431 ")


async def test_pipelined_heads_in_one_long_read_are_each_within_the_limit(
        connect: Connect, served: tuple[EdgeApp, EdgeServer]) -> None:
    """A read longer than 8 KiB holds many small heads (answered) or one long one (refused)."""
    small = request_bytes("GET", "/healthz", headers=[("X-Pad", "p" * 500)])
    reader, writer = await connect(address(served[1]))
    writer.write(small * 30)  # ~17 KiB in one write
    responses = Responses(reader)
    assert [(await responses.next()).status for _ in range(30)] == [200] * 30
    writer.write(small + request_bytes("GET", "/healthz", headers=[("X-Pad", "p" * 9000)]))
    assert [(await responses.next()).status for _ in range(2)] == [200, 431]
    assert await closed_by_server(reader)


async def test_a_chunked_body_and_its_trailers_are_bounded(
        connect: Connect, served: tuple[EdgeApp, EdgeServer]) -> None:
    """A trailer field after a chunked body's last chunk is buffered whole by the parser until its line ends:
    an endless one is refused once the bytes after the head pass 64 KiB + 8 KiB, not read for ever."""
    chunked = b"GET /healthz HTTP/1.1\r\nHost: qr.test\r\nTransfer-Encoding: chunked\r\n\r\n"
    reader, writer = await connect(address(served[1]))
    writer.write(chunked + b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\n\r\n")  # small trailers: answered
    assert (await Responses(reader).next()).status == 200
    writer.write(chunked + b"0\r\nX-Pad: ")
    answer = asyncio.create_task(reader.read(100))
    for _ in range(64):  # up to 4 MiB of one trailer line, never ended, in reads the parser buffers one by one
        await asyncio.sleep(0.005)
        if answer.done():
            break
        writer.write(b"a" * 65536)
        await writer.drain()
    assert (await asyncio.wait_for(answer, 1)).startswith(b"HTTP/1.1 413 ")


async def test_a_fragment_in_the_request_target_is_cut_off(
        connect: Connect, api: httpx.AsyncClient, make_key: KeyFactory, served: tuple[EdgeApp, EdgeServer]) -> None:
    """A client that sends `#…` (browsers do not) gets the answer uvicorn gives the ASGI app, which never sees
    the fragment: not a 404 for `slug#frag`, nor `#frag` in a query parameter's value."""
    key = await make_key()
    slug = (await make_code(api, key, destination={"type": "url", "url": "https://example.com/x"}))["slug"]
    reader, writer = await connect(address(served[1]))
    responses = Responses(reader)
    for target, location in [(f"/{slug}#frag", "https://example.com/x"), (f"/{slug}?a=1#f?g", "https://example.com/x?a=1"),
                             (f"http://qr.test/{slug}?a=1#frag", "https://example.com/x?a=1")]:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: qr.test\r\n\r\n".encode())
        answer = await responses.next()
        assert (answer.status, answer.headers.get("location")) == (302, location), target


async def test_slow_heads_and_idle_connections_are_disconnected(
        connect: Connect, env: dict[str, str]) -> None:
    async with edge_on_socket(env, EDGE_HEADER_TIMEOUT="0.3", EDGE_KEEPALIVE_TIMEOUT="0.3") as (_, server):
        reader, writer = await connect(address(server))
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: qr.t")  # and never the rest
        assert await closed_by_server(reader)
        reader, writer = await connect(address(server))
        writer.write(request_bytes("GET", "/healthz"))
        assert (await Responses(reader).next()).status == 200
        assert await closed_by_server(reader)  # idle past the keep-alive timeout
        reader, _ = await connect(address(server))  # connects and says nothing
        assert await closed_by_server(reader)


async def test_empty_lines_before_a_request_do_not_buy_time(connect: Connect, env: dict[str, str]) -> None:
    """RFC 9112 §2.2 lets a server skip empty lines before a request; skipping them renews no deadline, on a
    new connection or on an idle keep-alive one (timeouts 0.3 s, plus the sweep's half second at most)."""
    async with edge_on_socket(env, EDGE_HEADER_TIMEOUT="0.3", EDGE_KEEPALIVE_TIMEOUT="0.3") as (_, server):
        for answered_first in (False, True):
            reader, writer = await connect(address(server))
            if answered_first:
                writer.write(request_bytes("GET", "/healthz"))
                assert (await Responses(reader).next()).status == 200
            started = asyncio.get_running_loop().time()
            closed = asyncio.create_task(closed_by_server(reader))
            while not closed.done() and asyncio.get_running_loop().time() - started < 2:
                writer.write(b"\r\n")
                await asyncio.sleep(0.1)
            assert closed.done() and closed.result(), "a client sending only empty lines kept its connection"


async def test_connections_past_the_bound_wait_in_the_backlog(
        connect: Connect, env: dict[str, str]) -> None:
    async with edge_on_socket(env, EDGE_MAX_CONNECTIONS="2") as (_, server):
        held = [await connect(address(server)) for _ in range(2)]
        for reader, writer in held:
            writer.write(request_bytes("GET", "/healthz"))
            assert (await Responses(reader).next()).status == 200
        assert len(server.connections) == 2
        reader, writer = await connect(address(server))  # the kernel accepts it into the backlog
        writer.write(request_bytes("GET", "/healthz"))
        waiting = asyncio.ensure_future(Responses(reader).next())
        await asyncio.sleep(0.3)
        assert not waiting.done() and len(server.connections) == 2  # not accepted by the process
        held[0][1].close()
        assert (await waiting).status == 200  # accepted once a connection closed


async def test_drain_answers_every_request_in_flight(
        connect: Connect,
        api: httpx.AsyncClient, make_key: KeyFactory, served: tuple[EdgeApp, EdgeServer], redis: aioredis.Redis,
        redis_namespace: str) -> None:
    one, two = await two_codes(api, make_key)
    app, server = served
    connections = [await connect(address(server)) for _ in range(8)]
    idle_reader, _ = await connect(address(server))
    for i, (_, writer) in enumerate(connections):
        writer.write(b"".join(request_bytes("GET", f"/{(one, two)[(i + n) % 2]}") for n in range(3)))
    for _ in range(500):  # until the server has read requests it has not answered yet (cache misses)
        if any(c.slots for c in server.connections):
            break
        await asyncio.sleep(0.001)
    draining = asyncio.ensure_future(server.drain())
    answers = []
    for reader, _ in connections:
        raw = await read_until_closed(reader)
        answers.extend(line for line in raw.split(b"\r\n") if line.startswith(b"HTTP/1.1 "))
    await draining
    assert await closed_by_server(idle_reader)
    assert answers and set(answers) == {b"HTTP/1.1 302 Found"}
    assert len(await stream_events(redis, redis_namespace)) >= len(answers)  # every answer was recorded
    assert await redis.xlen(RedisKeys(redis_namespace).scans) == len(answers)  # and only answered ones


async def test_a_request_whose_answer_fails_is_answered_500_after_the_answers_before_it(
        connect: Connect, api: httpx.AsyncClient, make_key: KeyFactory, served: tuple[EdgeApp, EdgeServer],
        monkeypatch: pytest.MonkeyPatch, redis: aioredis.Redis, redis_namespace: str) -> None:
    """A bug while answering (here the scan event raises for one query) costs that request a 500, as under an
    ASGI server: the answers pipelined before it are written, the connection closes after it — on a hit, which
    fails before the request behind it is read, and on a cache miss, which fails once the request behind it was
    read (and could be recorded): that one is answered too, never recorded without its answer."""
    one, two = await two_codes(api, make_key)
    app, server = served
    event = app.scans.event

    def failing_event(method: str, query: bytes, *rest: Any) -> bytes:
        if query == b"fail=1":
            raise RuntimeError("a bug")
        return event(method, query, *rest)
    monkeypatch.setattr(app.scans, "event", failing_event)
    pipelined = request_bytes("GET", f"/{one}") + request_bytes("GET", f"/{two}?fail=1") \
        + request_bytes("GET", f"/{one}")
    scans = RedisKeys(redis_namespace).scans
    for cached in (False, True):  # both codes' rows are cached by the first round
        hits = app.codes.hits
        recorded = await redis.xlen(scans)
        reader, writer = await connect(address(server))
        writer.write(pipelined)
        raw = await read_until_closed(reader)
        statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)  # a status line may follow the 500's body on its line
        assert statuses == ([b"302", b"500"] if cached else [b"302", b"500", b"302"])
        await asyncio.sleep(0.2)  # a scan recorded but not answered would be in the stream by now
        assert await redis.xlen(scans) - recorded == statuses.count(b"302")
        assert (app.codes.hits > hits) == cached
        if not cached:
            for _ in range(100):  # until the local cache may answer (its fence open)
                probe, probe_writer = await connect(address(server))
                probe_writer.write(request_bytes("GET", f"/{one}", headers=[("Connection", "close")]))
                await read_until_closed(probe)
                if app.codes.hits > hits:
                    break
                await asyncio.sleep(0.02)


async def test_a_request_sent_after_the_drain_began_is_neither_read_nor_recorded(
        connect: Connect, api: httpx.AsyncClient, make_key: KeyFactory, served: tuple[EdgeApp, EdgeServer],
        redis: aioredis.Redis, redis_namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A keep-alive connection with an answer pending when SIGTERM comes: its answer is written, then the
    connection closes; what the client pipelined meanwhile is left for it to retry elsewhere — never recorded
    without an answer (a retried scan would count twice)."""
    one, _ = await two_codes(api, make_key)
    app, server = served
    read_many = app.lookup.code_reads.read_many

    async def slow_read_many(*args: Any, **kwargs: Any) -> Any:  # the miss stays in flight during the drain
        await asyncio.sleep(0.3)
        return await read_many(*args, **kwargs)
    monkeypatch.setattr(app.lookup.code_reads, "read_many", slow_read_many)
    reader, writer = await connect(address(server))
    writer.write(request_bytes("GET", f"/{one}"))
    for _ in range(1000):
        if any(c.slots for c in server.connections):
            break
        await asyncio.sleep(0.001)
    draining = asyncio.ensure_future(server.drain())
    await asyncio.sleep(0.02)
    writer.write(request_bytes("GET", f"/{one}?after=drain"))
    raw = await read_until_closed(reader)
    await draining
    assert raw.count(b"HTTP/1.1 302 Found") == 1 and raw.count(b"HTTP/1.1 ") == 1
    events = await stream_events(redis, redis_namespace)
    assert len(events) == 1 and await redis.xlen(RedisKeys(redis_namespace).scans) == 1

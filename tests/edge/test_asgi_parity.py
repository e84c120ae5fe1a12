"""`scanroute edge --server asgi` answers odd and hostile requests as the protocol server does (docs/edge.md,
"HTTP behaviour and limits"): both servers on real sockets, the requests written by hand."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis

from edge.app import EdgeApp
from shared.passwords import PasswordChecks
from shared.settings import EdgeSettings
from shared.throttle import KeyedThrottle
from tests.conftest import KeyFactory
from tests.edge.conftest import address, protocol_server, synced
from tests.edge.raw_http import READ_TIMEOUT, Responses, closed_by_server, connected, read_until_closed
from tests.edge.test_asgi_trailers import under_uvicorn
from tests.edge.test_scan import make_code, stream_events


@pytest.fixture(params=("protocol", "uvicorn"))
async def where(request: pytest.FixtureRequest, edge_app: EdgeApp) -> AsyncIterator[tuple[str, int]]:
    """The address of `edge_app` served by the protocol server, or as `--server asgi` serves it."""
    if request.param == "uvicorn":
        async with under_uvicorn(edge_app) as found:
            yield found
        return
    async with protocol_server(edge_app) as server:
        yield address(server)


async def answer_and_close(where: tuple[str, int], request: bytes) -> int:
    """The status answered to `request`, which must be the last on its connection."""
    async with connected(where) as (reader, writer):
        writer.write(request)
        await writer.drain()
        status = (await Responses(reader).next()).status
        assert await closed_by_server(reader)
        return status


@pytest.mark.parametrize("head", [
    "GET /{slug} HTTP/1.1\r\n\r\n",  # no Host
    "GET /{slug} HTTP/1.1\r\nHost: qr.test\r\nHost: qr.test\r\n\r\n",  # two
    "GET /{slug} HTTP/1.1\r\nHost: elsewhere.test\r\nHost: qr.test\r\n\r\n",
    "GET /healthz HTTP/1.1\r\n\r\n",
])
async def test_an_http_1_1_request_without_exactly_one_host_is_refused_by_both_servers(
        where: tuple[str, int], api: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str, head: str) -> None:
    code = await make_code(api, await make_key(), destination={"type": "url", "url": "https://example.com/"})
    assert await answer_and_close(where, head.format(slug=code["slug"]).encode()) == 400
    assert await stream_events(redis, redis_namespace) == []  # not a scan


async def test_http_1_0_needs_no_host_under_either_server(where: tuple[str, int]) -> None:
    assert await answer_and_close(where, b"GET /healthz HTTP/1.0\r\n\r\n") == 200


async def test_a_password_post_over_64_kib_is_refused_and_not_a_password_attempt(
        where: tuple[str, int], edge_app: EdgeApp, api: httpx.AsyncClient, make_key: KeyFactory,
        redis: aioredis.Redis, redis_namespace: str) -> None:
    code = await make_code(api, await make_key(), destination={"type": "url", "url": "https://example.com/"},
                           password="open sesame")
    edge_app.passwords.close()
    edge_app.passwords = PasswordChecks(per_client=KeyedThrottle(burst=1, per_second=0.001))  # one attempt
    body = b"password=" + b"x" * (100 * 1024)
    head = (f"POST /{code['slug']} HTTP/1.1\r\nHost: qr.test\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    assert await answer_and_close(where, head + body) == 413
    # The client's one attempt is still its own: the right password opens the code.
    form = b"password=open+sesame"
    async with connected(where) as (reader, writer):
        writer.write(head.replace(str(len(body)).encode(), str(len(form)).encode()) + form)
        answer = await Responses(reader).next()
    assert (answer.status, answer.headers.get("location")) == (302, "https://example.com/")
    assert [event.outcome for event in await stream_events(redis, redis_namespace)] == ["redirected"]


@pytest.mark.parametrize("head", [b"GET /healthz HTTP/1.1\r\n\r\n",  # no Host
                                  b"GET /x HTTP/1.1\r\nHost: qr.test\r\nHost: qr.test\r\n\r\n"])  # two
async def test_a_host_400_is_counted_as_malformed_under_both_servers(where: tuple[str, int], edge_app: EdgeApp,
                                                                     head: bytes) -> None:
    before = edge_app.metrics.by_outcome["malformed"]
    assert await answer_and_close(where, head) == 400
    assert edge_app.metrics.by_outcome["malformed"] == before + 1


TRIES = 30  # a reset is a race: one try may well miss it


def send_then_read(where: tuple[str, int], request: bytes) -> str:
    """As a plain client does it: the whole request in one `sendall`, then read until the server closes.
    The answer's status, or what went wrong instead (a reset, nothing read)."""
    with socket.create_connection(where, timeout=READ_TIMEOUT) as sock:
        try:
            sock.sendall(request)
            answer = b""
            while data := sock.recv(65536):
                answer += data
        except ConnectionError as exc:
            return type(exc).__name__
    return answer.split(b" ", 2)[1].decode() if answer else "nothing"


@pytest.mark.parametrize("head", [
    "POST /{slug} HTTP/1.1\r\nHost: qr.test\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    "Content-Length: {length}\r\n\r\n",  # 413: past 64 KiB
    "GET /{slug} HTTP/1.1\r\nHost: qr.test\r\nContent-Length: {length}\r\n\r\n",  # 413 too: any method
    "POST /healthz HTTP/1.1\r\nHost: qr.test\r\nContent-Length: {length}\r\n\r\n",  # and any path
    "POST /{slug} HTTP/1.1\r\nContent-Length: {length}\r\n\r\n",  # 400: no Host
], ids=["413", "413-get", "413-healthz", "400"])
async def test_a_refusal_reaches_a_client_still_sending_its_body_under_both_servers(
        where: tuple[str, int], api: httpx.AsyncClient, make_key: KeyFactory, head: str) -> None:
    """The server closes after its refusal while the client is still sending: the client reads the refusal,
    never a reset (docs/edge.md, "after a refusal")."""
    code = await make_code(api, await make_key(), destination={"type": "url", "url": "https://example.com/"},
                           password="open sesame")
    body = b"password=" + b"x" * (200 * 1024)
    request = head.format(slug=code["slug"], length=len(body)).encode() + body
    expected = "413" if "Host" in head else "400"
    answers = [await asyncio.to_thread(send_then_read, where, request) for _ in range(TRIES)]
    assert answers == [expected] * TRIES


async def test_a_scan_answered_after_its_connection_was_refused_raises_nothing(
        where: tuple[str, int], api: httpx.AsyncClient, make_key: KeyFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    """A scan and, in the same packet, bytes the parser refuses: the 400 closes the connection (lingering) while
    the scan is still being answered; its late answer is dropped, not written into a shut socket (an error
    and a traceback in the log per such connection)."""
    code = await make_code(api, await make_key(), destination={"type": "url", "url": "https://example.com/"})
    request = f"GET /{code['slug']} HTTP/1.1\r\nHost: qr.test\r\n\r\n".encode() + b"\x00\x01garbage\r\n\r\n"
    async with connected(where) as (reader, writer):
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(65536), READ_TIMEOUT)
        assert data.startswith(b"HTTP/1.1 "), data
        await asyncio.sleep(0.5)  # the scan's answer, if it was going to fail, has failed by now
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert not errors, [record.getMessage() for record in errors]


async def test_a_websocket_upgrade_is_answered_as_any_request_under_both_servers(
        where: tuple[str, int], caplog: pytest.LogCaptureFixture) -> None:
    """The edge serves no WebSocket: an upgrade request for an unknown path is its 404, with no error logged."""
    request = (b"GET /no-such-code HTTP/1.1\r\nHost: qr.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    async with connected(where) as (reader, writer):
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.read(65536), READ_TIMEOUT)
    assert head.startswith(b"HTTP/1.1 404 "), head
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert not errors, [record.getMessage() for record in errors]


BODY_REFUSED = [("GET", "/{slug}"), ("HEAD", "/{slug}"), ("POST", "/{slug}"), ("PUT", "/{slug}"),
                ("DELETE", "/{slug}"), ("POST", "/healthz"), ("GET", "/healthz"), ("PUT", "/readyz"),
                ("GET", "/metrics")]


async def answered_and_closed(where: tuple[str, int], request: bytes) -> bytes:
    """What the server sends to `request` until it closes the connection (raw: a HEAD's 413 is read whole)."""
    async with connected(where) as (reader, writer):
        writer.write(request)
        await writer.drain()
        return await read_until_closed(reader)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize(("method", "path"), BODY_REFUSED, ids=[f"{m} {p}" for m, p in BODY_REFUSED])
async def test_a_body_over_64_kib_is_refused_on_any_method_and_path_under_both_servers(
        where: tuple[str, int], edge_app: EdgeApp, api: httpx.AsyncClient, make_key: KeyFactory,
        redis: aioredis.Redis, redis_namespace: str, method: str, path: str, framing: str) -> None:
    """docs/edge.md, "bodies": more than 64 KiB of body → 413 and close, whatever the method and path — never a
    scan (the code exists: a GET would redirect), never the operations route's answer. A chunked body is
    refused as it grows past the limit, before its end (it has none here)."""
    code = await make_code(api, await make_key(), destination={"type": "url", "url": "https://example.com/"})
    target = path.format(slug=code["slug"])
    before = edge_app.metrics.by_outcome["malformed"]
    head = f"{method} {target} HTTP/1.1\r\nHost: qr.test\r\n"
    if framing == "content-length":
        request = f"{head}Content-Length: {100 * 1024}\r\n\r\n".encode() + b"x" * (100 * 1024)
    else:  # 512 KiB in chunks of 16 KiB, and no last chunk: the body has no end (within what a closing edge reads)
        request = f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + (b"4000\r\n" + b"x" * 0x4000 + b"\r\n") * 32
    raw = await answered_and_closed(where, request)
    assert raw.startswith(b"HTTP/1.1 413 "), raw[:200]
    assert b"\r\nconnection: close\r\n" in raw.lower()
    assert await stream_events(redis, redis_namespace) == []  # not a scan
    assert edge_app.metrics.by_outcome["malformed"] == before + 1


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_body_of_64_kib_is_read_past_and_the_request_answered_under_both_servers(
        where: tuple[str, int], api: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str, framing: str) -> None:
    """At the limit a GET's body is discarded and its scan answered and recorded; the connection stays open for
    the next request."""
    code = await make_code(api, await make_key(), destination={"type": "url", "url": "https://example.com/"})
    head = f"GET /{code['slug']} HTTP/1.1\r\nHost: qr.test\r\n"
    if framing == "content-length":
        request = f"{head}Content-Length: {64 * 1024}\r\n\r\n".encode() + b"x" * (64 * 1024)
    else:
        request = f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + \
            (b"4000\r\n" + b"x" * 0x4000 + b"\r\n") * 4 + b"0\r\n\r\n"
    async with connected(where) as (reader, writer):
        writer.write(request + b"GET /healthz HTTP/1.1\r\nHost: qr.test\r\n\r\n")
        responses = Responses(reader)
        scan, health = await responses.next(), await responses.next()
    assert (scan.status, scan.headers.get("location"), health.status) == (302, "https://example.com/", 200)
    assert [event.outcome for event in await stream_events(redis, redis_namespace)] == ["redirected"]


@pytest.mark.parametrize("kind", ["protocol", "uvicorn"])
async def test_a_body_that_never_arrives_does_not_hold_the_connection_under_both_servers(
        kind: str, edge_settings: EdgeSettings, env: dict[str, str], api: httpx.AsyncClient, make_key: KeyFactory,
        redis: aioredis.Redis, redis_namespace: str) -> None:
    """A request that announces a body and stops sending it is given EDGE_HEADER_TIMEOUT, then the connection
    closes unrecorded: the protocol server closes it, the ASGI app answers 408 and closes (uvicorn would wait on
    the body for ever)."""
    code = await make_code(api, await make_key(), destination={"type": "url", "url": "https://example.com/"})
    await synced(env)
    app = EdgeApp(dataclasses.replace(edge_settings, header_timeout=0.5))
    await app.startup()
    try:
        async with contextlib.AsyncExitStack() as stack:
            if kind == "uvicorn":
                where = await stack.enter_async_context(under_uvicorn(app))
            else:
                where = address(await stack.enter_async_context(protocol_server(app)))
            async with connected(where) as (reader, writer):
                writer.write(f"GET /{code['slug']} HTTP/1.1\r\nHost: qr.test\r\nContent-Length: 10\r\n\r\nab".encode())
                await writer.drain()
                raw = await read_until_closed(reader)  # READ_TIMEOUT, far longer than the 0.5 s given
    finally:
        await app.shutdown()
    assert raw == b"" if kind == "protocol" else raw.startswith(b"HTTP/1.1 408 "), raw[:200]
    assert await stream_events(redis, redis_namespace) == []

"""`scanroute edge --server asgi` under a real uvicorn: a chunked body's trailer fields are never taken as
headers, as the protocol server never takes them (docs/edge.md: "trailer fields … never taken as headers
(`X-Forwarded-For`, `User-Agent`, …)"). Behind a trusted proxy, a client's trailer must not choose its address."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import redis.asyncio as aioredis
import uvicorn

from edge.app import EdgeApp
from edge.asgi_protocol import UVICORN_OPTIONS
from tests.conftest import KeyFactory
from tests.edge.conftest import address, edge_client, protocol_server
from tests.edge.raw_http import Responses, connected
from tests.edge.test_client_address import documented_hash
from tests.edge.test_scan import make_code, stream_events

STARTUP_TIMEOUT = 10.0  # seconds


@asynccontextmanager
async def under_uvicorn(app: EdgeApp) -> AsyncIterator[tuple[str, int]]:
    """The app as `cmd_edge` serves it in asgi mode (UVICORN_OPTIONS); lifespan already run."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, loop="none", lifespan="off", access_log=False, log_level="warning",
                            **UVICORN_OPTIONS)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with asyncio.timeout(STARTUP_TIMEOUT):
        while not server.started:
            await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[:2]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, STARTUP_TIMEOUT)


def chunked_scan(slug: str) -> bytes:
    """A GET from a trusted proxy naming the client 198.51.100.7, with a trailer the client wrote itself."""
    return (f"GET /{slug} HTTP/1.1\r\nHost: qr.test\r\nUser-Agent: Mozilla/5.0\r\n"
            "X-Forwarded-For: 198.51.100.7\r\nTransfer-Encoding: chunked\r\n\r\n"
            "0\r\nX-Forwarded-For: 6.6.6.6\r\nUser-Agent: Forged\r\n\r\n").encode()


async def scan_raw(where: tuple[str, int], slug: str) -> int:
    async with connected(where) as (reader, writer):
        writer.write(chunked_scan(slug))
        await writer.drain()
        return (await Responses(reader).next()).status


async def test_a_trailer_field_is_not_a_header_under_either_server(
        env: dict[str, str], api: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str) -> None:
    key = await make_key()
    code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/"})
    async with edge_client({**env, "TRUSTED_PROXIES": "127.0.0.1/32"}, "asgi") as (app, _):
        async with protocol_server(app) as server:
            assert await scan_raw(address(server), code["slug"]) == 302
        async with under_uvicorn(app) as where:
            assert await scan_raw(where, code["slug"]) == 302
    expected = (documented_hash(env["SCAN_HASH_SECRET"], "198.51.100.7"), "Mozilla/5.0")
    assert [(event.ip_hash, event.user_agent) for event in await stream_events(redis, redis_namespace)] == [
        expected, expected]

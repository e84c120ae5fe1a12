"""Arbitrary bytes against the protocol server: it answers a standard error or closes, never crashes, and
never answers a scan it did not record."""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any

import httpx
import redis as sync_redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.keys import RedisKeys
from tests.conftest import KeyFactory
from tests.edge.conftest import address
from tests.edge.test_http_protocol import edge_on_socket
from tests.edge.test_scan import make_code

STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")
EXPECTED = {100, 200, 302, 404, 405, 400, 413, 417, 431}
CLOSING = {400, 413, 417, 431}  # the connection ends after these


def fragments(slug: str) -> st.SearchStrategy[bytes]:
    """Pieces of real requests, so that the fuzzer reaches past the request line, mixed with noise."""
    pieces = [f"GET /{slug} HTTP/1.1\r\n", f"HEAD /{slug}?qr=1 HTTP/1.0\r\n", f"GET /{slug}/ HTTP/1.1\r\n",
              "POST /x HTTP/1.1\r\n", "GET /%00 HTTP/1.1\r\n", "GET /healthz HTTP/1.1\r\n", "Host: qr.test\r\n",
              "Host: qr.test:8080\r\n", "Content-Length: 3\r\n", "Transfer-Encoding: chunked\r\n",
              "Expect: 100-continue\r\n", "Connection: close\r\n", "X-Forwarded-For: 1.2.3.4\r\n", "\r\n",
              "0\r\n\r\n", "abc", "3\r\nabc\r\n", "User-Agent: \xff\r\n"]
    return st.one_of(st.sampled_from([p.encode("latin-1") for p in pieces]), st.binary(max_size=64))


def exchange(target: tuple[str, int], data: bytes) -> bytes:
    with socket.create_connection(target, timeout=10) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may already have refused and closed
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                return received
            received += chunk
        return received


async def test_arbitrary_bytes(env: dict[str, str], api: httpx.AsyncClient, make_key: KeyFactory,
                               redis_namespace: str) -> None:
    key = await make_key()
    code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/"})
    crashes: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: crashes.append(context))
    stream = RedisKeys(redis_namespace).scans
    async with edge_on_socket(env, EDGE_HEADER_TIMEOUT="1", EDGE_KEEPALIVE_TIMEOUT="1") as (_, server):
        target = address(server)
        redis = sync_redis.Redis.from_url(env["REDIS_URL"], socket_timeout=10)

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(fragments(code["slug"]), max_size=12))
        def check(parts: list[bytes]) -> None:
            recorded_before = redis.xlen(stream)
            received = exchange(target, b"".join(parts))
            statuses = [int(s) for s in STATUS_LINE.findall(received)]
            assert set(statuses) <= EXPECTED, received
            closing = [i for i, s in enumerate(statuses) if s in CLOSING]
            assert not closing or closing == [len(statuses) - 1], received  # nothing after a refusal
            assert statuses.count(302) <= redis.xlen(stream) - recorded_before, received

        try:
            await asyncio.to_thread(check)
        finally:
            redis.close()
        async with httpx.AsyncClient(base_url=f"http://{target[0]}:{target[1]}", headers={"host": "qr.test"}) as c:
            assert (await c.get(f"/{code['slug']}")).status_code == 302  # still serving
    assert crashes == []

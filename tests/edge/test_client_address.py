"""docs/api.md §3.4: the client address is the peer, or behind TRUSTED_PROXIES the right-most untrusted
address of X-Forwarded-For; a client cannot choose the address its scans are counted under."""

from __future__ import annotations

import hashlib
from ipaddress import ip_network

import httpx
import pytest
import redis.asyncio as aioredis

from edge.app import EdgeApp
from edge.client_address import ClientAddress, unmapped
from edge.server import EdgeServer
from shared.listen import listen
from shared.settings import PRIVATE_NETWORKS, EdgeSettings
from tests.conftest import KeyFactory
from tests.edge.conftest import address, edge_client, protocol_server, synced
from tests.edge.raw_http import Responses, connected, request_bytes
from tests.edge.test_scan import make_code, stream_events

PROXIES = (ip_network("10.0.0.0/8"), ip_network("127.0.0.1/32"))


def documented_hash(secret: str, text: str) -> str:
    """docs/concepts.md, "Hashes": BLAKE2b-128 keyed with the SHA-256 of SCAN_HASH_SECRET, as hex."""
    key = hashlib.sha256(secret.encode()).digest()
    return hashlib.blake2b(text.encode(), key=key, digest_size=16).hexdigest()


@pytest.mark.parametrize(("peer", "forwarded", "client"), [
    ("198.51.100.1", b"203.0.113.9", "198.51.100.1"),  # an untrusted peer's header proves nothing
    ("10.1.1.1", b"203.0.113.9", "203.0.113.9"),
    ("10.1.1.1", b"1.2.3.4, 203.0.113.9, 10.2.2.2", "203.0.113.9"),  # right-most untrusted
    ("10.1.1.1", b"10.3.3.3, 10.2.2.2", "10.3.3.3"),  # all trusted: the farthest hop
    ("10.1.1.1", b"203.0.113.9, nonsense", "10.1.1.1"),  # garbage: only the last trusted hop is known
    ("10.1.1.1", b"", "10.1.1.1"),
    ("10.1.1.1", b" 2001:db8::1 ", "2001:db8::1"),
    ("10.1.1.1", b"203.0.113.9, ::ffff:10.2.2.2", "203.0.113.9"),  # a proxy on a dual-stack socket: still trusted
    ("10.1.1.1", b"::FFFF:203.0.113.9", "203.0.113.9"),  # an IPv4 client is an IPv4 address, however written
])
def test_right_most_untrusted_address(peer: str, forwarded: bytes, client: str) -> None:
    assert ClientAddress(PROXIES).of(peer, forwarded) == client
    assert ClientAddress(()).of(peer, forwarded) == peer  # no proxies configured: always the peer


async def test_scans_are_counted_under_the_forwarded_address_only_from_trusted_proxies(
        env: dict[str, str], api: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str, server_kind: str) -> None:
    key = await make_key()
    code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/"})
    headers = {"x-forwarded-for": "192.0.2.50, 198.51.100.7", "user-agent": "Mozilla/5.0 (iPhone)"}
    async with edge_client(env, server_kind) as (_, edge):  # no TRUSTED_PROXIES
        assert (await edge.get(f"/{code['slug']}", headers=headers)).status_code == 302
    trusting = {**env, "TRUSTED_PROXIES": "127.0.0.1/32, 203.0.113.7"}  # the test peers of both servers
    async with edge_client(trusting, server_kind) as (_, edge):
        assert (await edge.get(f"/{code['slug']}", headers=headers)).status_code == 302
    first, second = await stream_events(redis, redis_namespace)
    # Hashed as documented, so unique visitors count alike across versions and edges.
    secret = env["SCAN_HASH_SECRET"]
    assert first.ip_hash != documented_hash(secret, "198.51.100.7")
    assert second.ip_hash == documented_hash(secret, "198.51.100.7")
    assert second.visitor_hash == documented_hash(secret, "198.51.100.7\nMozilla/5.0 (iPhone)")


async def test_repeated_forwarded_for_headers_are_read_as_one_list(
        env: dict[str, str], api: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str, server_kind: str) -> None:
    """RFC 9110 §5.3: repeated X-Forwarded-For lines are one comma-separated list; reading only the last line
    would take a trusted proxy (10.1.1.1) for the client."""
    key = await make_key()
    code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/"})
    trusting = {**env, "TRUSTED_PROXIES": "127.0.0.1/32, 203.0.113.7, 10.0.0.0/8"}
    headers = [("x-forwarded-for", "198.51.100.7"), ("user-agent", "Mozilla/5.0"), ("x-forwarded-for", "10.1.1.1")]
    async with edge_client(trusting, server_kind) as (_, edge):
        assert (await edge.get(f"/{code['slug']}", headers=headers)).status_code == 302
    [event] = await stream_events(redis, redis_namespace)
    assert event.ip_hash == documented_hash(env["SCAN_HASH_SECRET"], "198.51.100.7")


async def test_a_trailer_field_does_not_extend_the_forwarded_for_list(
        env: dict[str, str], api: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str) -> None:
    """A trailer field after a chunked body (a proxy such as Go's ReverseProxy passes it on as the client sent
    it) is not a header: the client cannot append its own entry right of the proxy's."""
    key = await make_key()
    code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/"})
    await synced(env)
    app = EdgeApp(EdgeSettings.from_env({**env, "TRUSTED_PROXIES": "127.0.0.1"}))
    await app.startup()
    try:
        async with protocol_server(app) as server, connected(address(server)) as (reader, writer):
            writer.write(f"GET /{code['slug']} HTTP/1.1\r\nHost: qr.test\r\nX-Forwarded-For: 203.0.113.9\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n0\r\nX-Forwarded-For: 198.51.100.7\r\n"
                         "User-Agent: trailer\r\n\r\n".encode())
            assert (await Responses(reader).next()).status == 302
    finally:
        await app.shutdown()
    [event] = await stream_events(redis, redis_namespace)
    assert event.ip_hash == documented_hash(env["SCAN_HASH_SECRET"], "203.0.113.9")
    assert event.user_agent == ""


def test_an_ipv4_mapped_address_is_its_ipv4_address() -> None:
    assert [unmapped(a) for a in ("::ffff:127.0.0.1", "::ffff:7f00:1", "127.0.0.1", "2001:db8::1", "::ffff:x", "")] \
        == ["127.0.0.1", "127.0.0.1", "127.0.0.1", "2001:db8::1", "::ffff:x", ""]


async def test_an_ipv4_proxy_on_a_dual_stack_socket_is_trusted(
        env: dict[str, str], api: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str) -> None:
    """EDGE_BIND=[::]:8080 makes one socket for IPv4 and IPv6, which names an IPv4 peer ::ffff:a.b.c.d: the
    proxy 127.0.0.1 is still trusted, and a client without a proxy is counted under its IPv4 address."""
    key = await make_key()
    code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/"})
    await synced(env)
    app = EdgeApp(EdgeSettings.from_env({**env, "TRUSTED_PROXIES": "127.0.0.1"}))
    await app.startup()
    sock = listen(("::", 0))  # dual-stack, as for EDGE_BIND=[::]:8080 (Linux's default: IPv6 only if asked)
    server = EdgeServer(app, sock)
    await server.start()
    try:
        async with connected(("127.0.0.1", sock.getsockname()[1])) as (reader, writer):  # over IPv4
            writer.write(request_bytes("GET", f"/{code['slug']}", headers=[("X-Forwarded-For", "198.51.100.7")])
                         + request_bytes("GET", f"/{code['slug']}"))
            responses = Responses(reader)
            assert [(await responses.next()).status for _ in range(2)] == [302, 302]
    finally:
        await server.drain()
        sock.close()
        await app.shutdown()
    proxied, direct = await stream_events(redis, redis_namespace)
    assert proxied.ip_hash == documented_hash(env["SCAN_HASH_SECRET"], "198.51.100.7")
    assert direct.ip_hash == documented_hash(env["SCAN_HASH_SECRET"], "127.0.0.1")


PRIVATE = tuple(ip_network(n) for n in PRIVATE_NETWORKS.split(", "))  # EDGE_OPS_FROM's default


@pytest.mark.parametrize(("peer", "forwarded", "allowed"), [
    ("127.0.0.1", None, True),
    ("10.4.0.9", None, True),  # a scraper in the same private network
    ("::1", None, True),
    ("198.51.100.1", None, False),  # anyone on the internet
    ("127.0.0.1", b"198.51.100.1", False),  # a reverse proxy on the host that is not trusted: the origin is unknown
    ("10.1.1.1", b"198.51.100.1", False),  # a trusted proxy forwarding an internet client
    ("10.1.1.1", b"10.4.0.9", True),  # a trusted proxy forwarding a private scraper
])
def test_operations_endpoints_answer_private_clients_only(peer: str, forwarded: bytes | None, allowed: bool) -> None:
    assert ClientAddress((ip_network("10.0.0.0/8"),)).operator(peer, forwarded, PRIVATE) == allowed


async def test_readyz_and_metrics_are_an_unknown_slug_to_the_internet(env: dict[str, str], server_kind: str) -> None:
    """docs/edge.md, "Operations endpoints": the public port shows the internet no host name, pid, scan volume or
    code count; /healthz stays open (it says nothing). The test peers: 127.0.0.1 (protocol), 203.0.113.7 (ASGI)."""
    public = {name: value for name, value in env.items() if name != "EDGE_OPS_FROM"}
    if server_kind == "asgi":
        async with edge_client(public, server_kind) as (_, edge):
            assert [(await edge.get(path)).status_code for path in ("/healthz", "/readyz", "/metrics")] == \
                [200, 404, 404]
        async with edge_client({**public, "EDGE_OPS_FROM": "203.0.113.0/24"}, server_kind) as (_, edge):
            assert (await edge.get("/metrics")).status_code == 200
        return
    async with edge_client(public, server_kind) as (_, edge):
        assert (await edge.get("/metrics")).status_code == 200  # loopback
        through_proxy = {"x-forwarded-for": "198.51.100.1"}  # a proxy on this host, not in TRUSTED_PROXIES
        assert [(await edge.get(path, headers=through_proxy)).status_code
                for path in ("/healthz", "/readyz", "/metrics")] == [200, 404, 404]
    async with edge_client({**public, "EDGE_OPS_FROM": "-"}, server_kind) as (_, edge):
        assert (await edge.get("/readyz")).status_code == 404

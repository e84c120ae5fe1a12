"""SSRF guard as logo fetches use it: no request reaches a private address unless that host is allowed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from shared.outbound import (
    OutboundRefused,
    fetch,
    resolve_public_address,
)
from tests.control_plane.render.logos import logo_png
from tests.local_dns import LocalDNS
from tests.local_http import local_server

NONE: frozenset[str] = frozenset()
LOCAL = frozenset({"127.0.0.1"})
IMAGES = frozenset({"image/png"})


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/logo.png", "https://10.1.2.3/logo.png", "https://172.16.0.9/x.png",
    "https://192.168.1.1/x.png", "https://169.254.169.254/latest/meta-data/", "https://[::1]/x.png",
    "https://[fd00:ec2::254]/x.png", "https://[::ffff:127.0.0.1]/x.png", "https://224.0.0.1/x.png",
    "https://0.0.0.0/x.png", "https://100.64.0.1/x.png", "https://localhost/logo.png",
    # IPv4 embedded in IPv6: 6to4, Teredo (client ~80ff:fffe = 127.0.0.1), NAT64, IPv4-compatible
    "https://[2002:7f00:1::]/x.png", "https://[2002:a9fe:a9fe::1]/x.png",
    "https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/x.png", "https://[64:ff9b::7f00:1]/x.png",
    "https://[64:ff9b::a9fe:a9fe]/x.png", "https://[::127.0.0.1]/x.png", "https://[::a00:1]/x.png",
    # IPv6 site-local (deprecated, still used inside some networks) and documentation (RFC 9637)
    "https://[fec0::1]/x.png", "https://[fec0:0:0:1::10]/x.png", "https://[feff::1]/x.png", "https://[3fff::1]/x.png",
])
async def test_private_and_special_addresses_are_refused_before_any_connection(url: str) -> None:
    with pytest.raises(OutboundRefused, match=r"resolves to an? [A-Za-z0-9 -]*address, not a public one"):
        await fetch(url, allowed_hosts=NONE, allow_http=False, max_bytes=1000, content_types=IMAGES)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x.png", "gopher://example.com/",
                                 "http://example.com/logo.png", "https:///no-host"])
async def test_only_https_urls_with_a_host(url: str) -> None:
    with pytest.raises(OutboundRefused):
        await resolve_public_address(url, allowed_hosts=NONE, allow_http=False)


@pytest.mark.parametrize("url", ["https://a..example/x", "https://" + "a" * 64 + ".example/x", "https://./",
                                 "https://xn--zz.example/x", "https://hooks.xn--a.example/x"])
async def test_a_host_name_that_cannot_be_encoded_is_refused(url: str) -> None:
    with pytest.raises(OutboundRefused, match="invalid host name"):
        await resolve_public_address(url, allowed_hosts=NONE, allow_http=False)


@pytest.fixture
async def server() -> AsyncIterator[str]:
    png = logo_png()

    async def logo(request: web.Request) -> web.Response:
        return web.Response(body=png, content_type="image/png")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://127.0.0.1:1/elsewhere.png")

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html></html>", content_type="text/html")

    async def trickled(request: web.Request) -> web.StreamResponse:
        # Chunked, no Content-Length, in pieces that arrive one after another.
        size = int(request.query["size"])
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        body = (png * (size // len(png) + 1))[:size]
        for start in range(0, size, 1000):
            await response.write(body[start:start + 1000])
            await asyncio.sleep(0)
        await response.write_eof()
        return response

    routes = [web.get("/logo.png", logo), web.get("/moved.png", redirect), web.get("/page", page),
              web.get("/trickled.png", trickled)]
    async with local_server(routes) as base:
        yield base


async def test_an_allowed_host_is_fetched(server: str) -> None:
    fetched = await fetch(f"{server}/logo.png", allowed_hosts=LOCAL, allow_http=True, max_bytes=100_000,
                          content_types=IMAGES)
    assert fetched.body == logo_png() and fetched.content_type == "image/png"


async def test_the_same_server_is_refused_without_the_allowance(server: str) -> None:
    with pytest.raises(OutboundRefused, match="resolves to a loopback address"):
        await fetch(f"{server}/logo.png", allowed_hosts=NONE, allow_http=True, max_bytes=100_000,
                    content_types=IMAGES)


async def test_redirects_are_not_followed(server: str) -> None:
    with pytest.raises(OutboundRefused, match="redirects"):
        await fetch(f"{server}/moved.png", allowed_hosts=LOCAL, allow_http=True, max_bytes=100_000,
                    content_types=IMAGES)


async def test_size_and_type_limits(server: str) -> None:
    with pytest.raises(OutboundRefused, match="more than 100 bytes"):
        await fetch(f"{server}/logo.png", allowed_hosts=LOCAL, allow_http=True, max_bytes=100, content_types=IMAGES)
    with pytest.raises(OutboundRefused, match="text/html"):
        await fetch(f"{server}/page", allowed_hosts=LOCAL, allow_http=True, max_bytes=100_000, content_types=IMAGES)


async def test_a_trickled_body_is_read_up_to_the_limit_not_what_has_arrived(server: str) -> None:
    whole = await fetch(f"{server}/trickled.png?size=300000", allowed_hosts=LOCAL, allow_http=True,
                        max_bytes=300_000, content_types=IMAGES)
    assert len(whole.body) == 300_000
    with pytest.raises(OutboundRefused, match="more than 300000 bytes"):
        await fetch(f"{server}/trickled.png?size=300004", allowed_hosts=LOCAL, allow_http=True, max_bytes=300_000,
                    content_types=IMAGES)


async def test_names_resolve_through_the_name_server_and_localhost_through_the_hosts_file(dns: LocalDNS) -> None:
    dns.answers["receiver.test"] = "93.184.215.14"
    found = await resolve_public_address("https://receiver.test:8443/hook", allowed_hosts=NONE, allow_http=False)
    assert (found.host, found.port, found.ip) == ("receiver.test", 8443, "93.184.215.14")
    with pytest.raises(OutboundRefused, match="does not resolve"):
        await resolve_public_address("https://unknown.test/hook", allowed_hosts=NONE, allow_http=False)
    local = await resolve_public_address("http://localhost:8000/hook", allowed_hosts=frozenset({"localhost"}),
                                         allow_http=True)
    assert local.ip == "127.0.0.1"  # not ::1: a receiver on a developer's machine listens on 127.0.0.1


@pytest.mark.parametrize(("address", "kind"), [
    ("10.20.30.40", "a private address"), ("127.0.0.53", "a loopback address"),
    ("169.254.169.254", "a link-local address"), ("100.64.0.1", "a reserved address"),
])
async def test_a_refusal_names_the_kind_of_address_never_the_address(dns: LocalDNS, address: str,
                                                                     kind: str) -> None:
    """The message is stored and shown to the tenant: with the address in it, a webhook URL would tell them
    what an internal name resolves to."""
    dns.answers["internal.test"] = address
    with pytest.raises(OutboundRefused) as refused:
        await resolve_public_address("https://internal.test/hook", allowed_hosts=NONE, allow_http=False)
    assert str(refused.value) == f"resolves to {kind}, not a public one"


@pytest.mark.parametrize(("host", "kind"), [
    ("[::1]", "a loopback address"), ("[::ffff:10.0.0.1]", "a private address"),
    ("[64:ff9b::a9fe:a9fe]", "an IPv6 address carrying a link-local address"), ("[fec0::1]", "a site-local address"),
])
async def test_an_ipv6_refusal_names_the_kind_too(host: str, kind: str) -> None:
    with pytest.raises(OutboundRefused) as refused:
        await resolve_public_address(f"https://{host}/hook", allowed_hosts=NONE, allow_http=False)
    assert str(refused.value) == f"resolves to {kind}, not a public one"


async def test_lookups_that_hang_do_not_delay_other_lookups(dns: LocalDNS) -> None:
    """64 lookups waiting on a name server that never answers (more than the default thread pool's threads)
    leave another name's lookup as fast as ever."""
    dns.answers["fast.test"] = "93.184.215.14"
    dns.hanging.add("slow.test")
    stuck = [asyncio.create_task(resolve_public_address(f"https://slow.test/{n}", allowed_hosts=NONE,
                                                        allow_http=False)) for n in range(64)]
    await asyncio.sleep(0.2)
    found = await resolve_public_address("https://fast.test/hook", allowed_hosts=NONE, allow_http=False)
    assert found.ip == "93.184.215.14" and not any(task.done() for task in stuck)  # answered while they wait
    outcomes = await asyncio.gather(*stuck, return_exceptions=True)
    assert all(isinstance(o, OutboundRefused) for o in outcomes)


async def test_a_stored_host_name_is_encoded_not_judged_again(dns: LocalDNS) -> None:
    # A webhook URL saved before IDNA was checked (docs/webhooks.md): delivered, not refused.
    dns.answers |= {"xn--zz.example": "93.184.215.14"}
    for url in ("https://xn--zz.example/hook", "https://XN--ZZ.example/hook"):
        with pytest.raises(OutboundRefused, match="invalid host name"):
            await resolve_public_address(url, allowed_hosts=NONE, allow_http=False)
        found = await resolve_public_address(url, allowed_hosts=NONE, allow_http=False, stored=True)
        assert found.ip == "93.184.215.14", url
    with pytest.raises(OutboundRefused, match="invalid host name"):
        await resolve_public_address("https://a..example/x", allowed_hosts=NONE, allow_http=False, stored=True)

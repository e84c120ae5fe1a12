"""SSRF guard: no request reaches a private address unless the operator allowed that host."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from control_plane.outbound import OutboundPolicy, OutboundRefused, check_url, fetch, is_public_address, resolve_checked
from tests.control_plane.render.logos import logo_png

OPEN = OutboundPolicy()
LOCAL = OutboundPolicy(frozenset({"127.0.0.1"}))
IMAGES = frozenset({"image/png"})


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/logo.png", "https://10.1.2.3/logo.png", "https://172.16.0.9/x.png",
    "https://192.168.1.1/x.png", "https://169.254.169.254/latest/meta-data/", "https://[::1]/x.png",
    "https://[fd00:ec2::254]/x.png", "https://[::ffff:127.0.0.1]/x.png", "https://224.0.0.1/x.png",
    "https://0.0.0.0/x.png", "https://100.64.0.1/x.png",
])
async def test_private_and_special_addresses_are_refused_before_any_connection(url: str) -> None:
    with pytest.raises(OutboundRefused, match="not a public address"):
        await fetch(url, OPEN, max_bytes=1000, content_types=IMAGES)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x.png", "gopher://example.com/",
                                 "http://example.com/logo.png", "https:///no-host"])
def test_only_https_urls_with_a_host(url: str) -> None:
    with pytest.raises(OutboundRefused):
        check_url(url, OPEN)


async def test_a_name_resolving_to_loopback_is_refused() -> None:
    with pytest.raises(OutboundRefused, match="resolves to 127.0.0.1"):
        await resolve_checked("localhost", 443, OPEN)


def test_public_addresses_pass() -> None:
    assert is_public_address(ipaddress.ip_address("93.184.216.34"))
    assert is_public_address(ipaddress.ip_address("2606:2800:220:1:248:1893:25c8:1946"))


@pytest.fixture
async def server() -> AsyncIterator[str]:
    png = logo_png()

    async def logo(request: web.Request) -> web.Response:
        return web.Response(body=png, content_type="image/png")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://127.0.0.1:1/elsewhere.png")

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html></html>", content_type="text/html")

    app = web.Application()
    app.add_routes([web.get("/logo.png", logo), web.get("/moved.png", redirect), web.get("/page", page)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_an_allowed_host_is_fetched(server: str) -> None:
    fetched = await fetch(f"{server}/logo.png", LOCAL, max_bytes=100_000, content_types=IMAGES)
    assert fetched.body == logo_png() and fetched.content_type == "image/png"


async def test_the_same_server_is_refused_without_the_allowance(server: str) -> None:
    with pytest.raises(OutboundRefused):
        await fetch(f"{server}/logo.png", OPEN, max_bytes=100_000, content_types=IMAGES)


async def test_redirects_are_not_followed(server: str) -> None:
    with pytest.raises(OutboundRefused, match="redirects"):
        await fetch(f"{server}/moved.png", LOCAL, max_bytes=100_000, content_types=IMAGES)


async def test_size_and_type_limits(server: str) -> None:
    with pytest.raises(OutboundRefused, match="larger than 100 bytes"):
        await fetch(f"{server}/logo.png", LOCAL, max_bytes=100, content_types=IMAGES)
    with pytest.raises(OutboundRefused, match="text/html"):
        await fetch(f"{server}/page", LOCAL, max_bytes=100_000, content_types=IMAGES)

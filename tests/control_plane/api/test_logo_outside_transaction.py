"""A slow logo fetch holds no row lock or pooled connection: other writes to the same code go through."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from tests.conftest import KeyFactory, bearer
from tests.control_plane.render.logos import logo_png
from tests.local_http import local_server

BOUND = 30.0  # seconds; a bound on a wait, not a measurement


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "OUTBOUND_ALLOWED_HOSTS": "127.0.0.1"}


class SlowLogo:
    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.requested.set()
        await asyncio.wait_for(self.release.wait(), BOUND)
        return web.Response(body=logo_png(), content_type="image/png")


@pytest.fixture
async def slow_logo() -> AsyncIterator[tuple[SlowLogo, str]]:
    logo = SlowLogo()
    async with local_server([web.get("/logo.png", logo.handle)]) as base:
        yield logo, f"{base}/logo.png"


async def patched_while_a_rename_goes_through(api: httpx.AsyncClient, key: str, code_id: str, logo: SlowLogo,
                                              design: dict[str, object]) -> httpx.Response:
    """PATCHes `design`; while its logo fetch waits, a rename of the same code must go through (the fetch
    holds no row lock or pooled connection). Returns the design PATCH's answer, once the fetch is let go."""
    logo.release.clear()
    logo.requested.clear()
    with_logo = asyncio.create_task(api.patch(f"/v1/qr-codes/{code_id}", headers=bearer(key),
                                              json={"design": design}))
    await asyncio.wait_for(logo.requested.wait(), BOUND)
    try:
        renamed = await asyncio.wait_for(
            api.patch(f"/v1/qr-codes/{code_id}", headers=bearer(key), json={"name": "renamed"}), BOUND)
        assert renamed.status_code == 200 and not with_logo.done()
    finally:
        logo.release.set()
    patched = await with_logo
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "renamed"
    return patched


async def test_a_patch_waiting_for_its_logo_does_not_block_another_patch(
        api: httpx.AsyncClient, make_key: KeyFactory, slow_logo: tuple[SlowLogo, str]) -> None:
    logo, url = slow_logo
    key = await make_key()
    code = (await api.post("/v1/qr-codes", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://example.com/menu"}})).json()
    patched = await patched_while_a_rename_goes_through(api, key, code["id"], logo,
                                                        {"logo": {"url": url, "scale": 0.2}})
    assert len(patched.json()["design"]["logo"]["sha256"]) == 64


async def test_another_orgs_code_is_a_404_without_a_fetch_of_its_logo(api: httpx.AsyncClient,
                                                                      make_key: KeyFactory) -> None:
    """A PATCH of another organisation's code answers as for an unknown id — not a 422 about that code's logo,
    nor a fetch of it — and the owner can still remove a logo whose host stopped answering."""
    state = {"serving": True, "fetches": 0}

    async def handle(request: web.Request) -> web.Response:
        state["fetches"] += 1
        return web.Response(body=logo_png(), content_type="image/png") if state["serving"] \
            else web.Response(status=404)

    async with local_server([web.get("/acme-logo.png", handle)]) as base:
        acme, globex = await make_key("acme"), await make_key("globex")
        code = (await api.post("/v1/qr-codes", headers=bearer(acme), json={
            "destination": {"type": "url", "url": "https://example.com/a"},
            "design": {"logo": {"url": f"{base}/acme-logo.png", "scale": 0.2}}})).json()
        state["serving"], fetches = False, state["fetches"]
        foreign = await api.patch(f"/v1/qr-codes/{code['id']}", headers=bearer(globex),
                                  json={"design": {"margin": 4}})
        assert foreign.status_code == 404, foreign.text
        assert state["fetches"] == fetches
        removed = await api.patch(f"/v1/qr-codes/{code['id']}", headers=bearer(acme), json={"design": {"logo": None}})
        assert removed.status_code == 200, removed.text
        assert removed.json()["design"].get("logo") is None


async def test_a_patch_of_the_logos_scale_alone_fetches_the_stored_url_outside_the_transaction(
        api: httpx.AsyncClient, make_key: KeyFactory, slow_logo: tuple[SlowLogo, str]) -> None:
    """`{"logo": {"scale": …}}` merges into the stored logo: its URL is fetched again before the row is locked
    (another write goes through meanwhile), and the code keeps it."""
    logo, url = slow_logo
    key = await make_key()
    logo.release.set()
    code = (await api.post("/v1/qr-codes", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://example.com/a"}, "design": {"logo": {"url": url}}})).json()
    patched = await patched_while_a_rename_goes_through(api, key, code["id"], logo, {"logo": {"scale": 0.25}})
    assert patched.json()["design"]["logo"]["url"] == url and patched.json()["design"]["logo"]["scale"] == 0.25

"""The dashboard behind a TLS-terminating proxy on another host (docs/dashboard.md, "Sign-in and sessions";
docs/operations.md, CONTROL_PLANE_TRUSTED_PROXIES): the app is served wrapped as `scanroute control-plane`'s
uvicorn wraps it, every start path alike (`control_plane_server`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie
from typing import Any

import httpx
import uvicorn

from control_plane.api.app import create_app
from control_plane.cli.main import control_plane_server
from shared.settings import ControlPlaneSettings
from tests.control_plane.dashboard.conftest import PASSWORD, UserFactory, csrf_of

PROXY = ("10.0.0.5", 40000)  # the proxy's TCP connection to the control plane


@asynccontextmanager
async def served(env: dict[str, str], peer: tuple[str, int], **more: str) -> AsyncIterator[Callable[..., Any]]:
    """Clients reaching the control plane through `peer`, forwarding their own address and https."""
    settings = ControlPlaneSettings.from_env({**env, "CONTROL_PLANE_PUBLIC_URL": "https://qr-admin.example.com",
                                              **more})
    app = create_app(settings)
    config = uvicorn.Config(app, **{**control_plane_server(settings), "lifespan": "off"})
    config.load()
    clients: list[httpx.AsyncClient] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=config.loaded_app, client=peer)

        def client_at(address: str) -> httpx.AsyncClient:
            clients.append(httpx.AsyncClient(transport=transport, base_url="http://qr-admin.example.com",
                                             headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": address}))
            return clients[-1]

        try:
            yield client_at
        finally:
            for client in clients:
                await client.aclose()


async def sign_in_at(client: httpx.AsyncClient, email: str, password: str) -> tuple[httpx.Response, httpx.Response]:
    """The browser speaks https to the proxy, which forwards plain http: the browser sends back the sign-in
    form's cookie, Secure or not (httpx's jar, seeing http, would keep a Secure one back)."""
    form = await client.get("/app/login")
    login_cookie = SimpleCookie(form.headers["set-cookie"])["scanroute_login"].value
    return form, await client.post("/app/login", headers={"Cookie": f"scanroute_login={login_cookie}"},
                                   data={"email": email, "password": password, "csrf_token": csrf_of(form.text)})


async def test_the_cookies_are_secure_when_the_public_url_is_https_though_the_proxy_is_not_trusted(
        env: dict[str, str], make_user: UserFactory) -> None:
    """The operator says clients reach the control plane at https://… (CONTROL_PLANE_PUBLIC_URL) but has not
    named the proxy: its X-Forwarded-Proto is not believed, the request looks like plain http, and yet neither
    the session token nor the sign-in form's token may ever go out in clear text."""
    await make_user()
    async with served(env, PROXY) as client_at:
        form, signed_in = await sign_in_at(client_at("203.0.113.7"), "ana@example.com", PASSWORD)
    assert signed_in.status_code == 303, signed_in.text
    assert "secure" in form.headers["set-cookie"].lower(), form.headers["set-cookie"]  # scanroute_login
    session = [c for c in signed_in.headers.get_list("set-cookie") if c.startswith("scanroute_session=")]
    assert session and "secure" in session[0].lower(), session


async def test_one_clients_failed_sign_ins_behind_a_trusted_proxy_do_not_lock_out_everyone_else(
        env: dict[str, str], make_user: UserFactory) -> None:
    """Failed sign-ins are counted "per client address (20)" (docs/dashboard.md). Behind a proxy named in
    CONTROL_PLANE_TRUSTED_PROXIES the client is the address the proxy forwards, not the proxy: one stranger's
    20 guesses at made-up addresses lock out that stranger only."""
    await make_user()
    async with served(env, PROXY, CONTROL_PLANE_TRUSTED_PROXIES="10.0.0.0/24") as client_at:
        stranger = client_at("203.0.113.66")
        for n in range(20):
            await sign_in_at(stranger, f"guess{n}@example.org", "x" * 10)
        _, locked = await sign_in_at(stranger, "guess20@example.org", "x" * 10)
        _, ana = await sign_in_at(client_at("198.51.100.7"), "ana@example.com", PASSWORD)
    assert locked.status_code == 429
    assert ana.status_code == 303, (ana.status_code, ana.headers.get("retry-after"))


async def test_a_client_that_is_no_trusted_proxy_cannot_pick_its_own_address(
        env: dict[str, str], make_user: UserFactory) -> None:
    """A client reaching the control plane directly sends a new X-Forwarded-For with every guess: it is still
    counted as its own TCP address, and stopped after 20."""
    await make_user()
    async with served(env, ("203.0.113.66", 40000), CONTROL_PLANE_TRUSTED_PROXIES="10.0.0.0/24") as client_at:
        for n in range(20):
            await sign_in_at(client_at(f"192.0.2.{n}"), f"guess{n}@example.org", "x" * 10)
        _, locked = await sign_in_at(client_at("192.0.2.200"), "ana@example.com", PASSWORD)
    assert locked.status_code == 429, locked.status_code

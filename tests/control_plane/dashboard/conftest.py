"""A dashboard user factory and a browser-like client (cookies kept) on the in-process control plane."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from control_plane.api.app import create_app
from control_plane.services.keys import ensure_org
from control_plane.services.users import User, create_user
from shared.settings import ControlPlaneSettings

PASSWORD = "correct horse battery"
UserFactory = Callable[..., Awaitable[User]]


@pytest.fixture
def make_user(database_url: str) -> UserFactory:
    async def make(email: str = "ana@example.com", role: str = "owner", org: str = "acme",
                   password: str = PASSWORD) -> User:
        conn = await asyncpg.connect(database_url, timeout=10)
        try:
            return await create_user(conn, await ensure_org(conn, org), email, role, password)
        finally:
            await conn.close()

    return make


@pytest.fixture
async def app_transport(cp_settings: ControlPlaneSettings) -> AsyncIterator[httpx.ASGITransport]:
    app = create_app(cp_settings)
    async with app.router.lifespan_context(app):
        yield httpx.ASGITransport(app=app, raise_app_exceptions=False)


BrowserFactory = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def browser(app_transport: httpx.ASGITransport) -> AsyncIterator[BrowserFactory]:
    """New cookie jars on the same app: each one is a separate person's browser, at the client address `address`
    (the transport's own, 127.0.0.1, unless given)."""
    clients: list[httpx.AsyncClient] = []

    def make(base_url: str = "http://cp.test", address: str | None = None) -> httpx.AsyncClient:
        transport = app_transport if address is None else httpx.ASGITransport(
            app=app_transport.app, raise_app_exceptions=False, client=(address, 123))
        clients.append(httpx.AsyncClient(transport=transport, base_url=base_url))
        return clients[-1]

    yield make
    for client in clients:
        await client.aclose()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, email: str = "ana@example.com", password: str = PASSWORD,
                  next_path: str = "") -> httpx.Response:
    form = await client.get("/app/login")
    return await client.post(f"/app/login{'?next=' + next_path if next_path else ''}",
                             data={"email": email, "password": password, "csrf_token": csrf_of(form.text)})


SignedIn = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
def signed_in(make_user: UserFactory, browser: BrowserFactory) -> SignedIn:
    """A new user of the given role, signed in on a browser of their own."""

    async def make(email: str = "ana@example.com", role: str = "owner") -> httpx.AsyncClient:
        await make_user(email, role)
        client = browser()
        await sign_in(client, email)
        return client

    return make


async def post_form(client: httpx.AsyncClient, page: str, action: str, data: dict[str, Any]) -> httpx.Response:
    """Submit a form the way a browser does: the CSRF token comes from the page the form is on."""
    token = csrf_of((await client.get(page)).text)
    return await client.post(action, data={**data, "csrf_token": token})


async def create_through_form(client: httpx.AsyncClient, listing: str, data: dict[str, Any], id_prefix: str) -> str:
    """Fill in the new-item form of `listing` (/app/codes, /app/groups): the id of what it made."""
    response = await post_form(client, f"{listing}/new", listing, data)
    assert response.status_code == 303, response.text
    found = re.fullmatch(rf"{listing}/({id_prefix}_\w+)\?created=1", response.headers["location"])
    assert found
    return found.group(1)

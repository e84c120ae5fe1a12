"""Traffic without a valid key, and the public image routes, are rate limited per client address."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import httpx
import pytest

from control_plane.api.app import create_app
from shared.settings import ControlPlaneSettings
from tests.conftest import KeyFactory, bearer


@pytest.fixture
async def strict_api(env: dict[str, str]) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two clients of an app allowing 5 requests per address (no refill to speak of): 10.0.0.1 and 10.0.0.2."""
    settings = ControlPlaneSettings.from_env({**env, "ADDRESS_RATE_LIMIT_BURST": "5",
                                              "ADDRESS_RATE_LIMIT_PER_SECOND": "0.01"})
    app = create_app(settings)
    async with app.router.lifespan_context(app), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("10.0.0.1", 1000)),
                              base_url="http://cp.test") as first, \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("10.0.0.2", 1000)),
                              base_url="http://cp.test") as second:
        yield first, second


async def test_random_tokens_share_their_address_bucket(strict_api: tuple[httpx.AsyncClient, httpx.AsyncClient],
                                                        make_key: KeyFactory) -> None:
    attacker, neighbour = strict_api
    statuses = [(await attacker.get("/v1/qr-codes", headers=bearer(f"qr_live_{secrets.token_hex(16)}"))).status_code
                for _ in range(8)]
    assert statuses == [401] * 5 + [429] * 3
    key = await make_key()
    assert (await attacker.get("/v1/qr-codes", headers=bearer(key))).status_code == 429
    assert (await neighbour.get("/v1/qr-codes", headers=bearer(key))).status_code == 200


async def test_requests_without_a_key_are_limited_per_address(
        strict_api: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> None:
    anonymous, _ = strict_api
    statuses = [(await anonymous.get("/v1/folders")).status_code for _ in range(7)]
    assert statuses == [401] * 5 + [429] * 2


async def test_a_valid_key_does_not_spend_its_address_budget(
        strict_api: tuple[httpx.AsyncClient, httpx.AsyncClient], make_key: KeyFactory) -> None:
    client, _ = strict_api
    key = await make_key()
    assert {(await client.get("/v1/folders", headers=bearer(key))).status_code for _ in range(12)} == {200}


@pytest.mark.parametrize("path", ["/i/0123456789abcdef.png", "/qr/0123456789abcdef", "/logos/ab.png"])
async def test_public_image_routes_are_limited_per_address(
        strict_api: tuple[httpx.AsyncClient, httpx.AsyncClient], path: str) -> None:
    client, other = strict_api
    statuses = [(await client.get(path)).status_code for _ in range(7)]
    assert 429 not in statuses[:5] and statuses[5:] == [429, 429]
    assert (await other.get(path)).status_code != 429


@pytest.fixture
async def strict_app(env: dict[str, str]) -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    """Clients at any address of an app allowing 5 requests per address (no refill to speak of)."""
    settings = ControlPlaneSettings.from_env({**env, "ADDRESS_RATE_LIMIT_BURST": "5",
                                              "ADDRESS_RATE_LIMIT_PER_SECOND": "0.01"})
    app = create_app(settings)
    async with app.router.lifespan_context(app), AsyncExitStack() as clients:
        def at(address: str) -> httpx.AsyncClient:
            return clients.push_async_exit(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, client=(address, 1000)), base_url="http://cp.test"))
        yield at


async def test_one_ipv6_host_has_one_bucket_whatever_address_of_its_64_it_uses(
        strict_app: Callable[[str], httpx.AsyncClient]) -> None:
    """One machine owns a whole /64 (docs/security.md, "Rate limits per address")."""
    statuses = [(await strict_app(f"2001:db8:1:2::{n + 1:x}").get("/v1/folders")).status_code for n in range(7)]
    assert statuses == [401] * 5 + [429] * 2
    assert (await strict_app("2001:db8:1:3::1").get("/v1/folders")).status_code == 401


async def test_an_ipv4_client_has_one_bucket_whether_or_not_it_is_seen_as_ipv4_mapped(
        strict_app: Callable[[str], httpx.AsyncClient]) -> None:
    statuses = [(await strict_app(address).get("/v1/folders")).status_code
                for address in ["203.0.113.7", "::ffff:203.0.113.7"] * 3 + ["203.0.113.7"]]
    assert statuses == [401] * 5 + [429] * 2

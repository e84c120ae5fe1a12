"""Host names are checked when they are written, never when stored data is read (docs/api.md §2.3). Before
IDNA was checked, a URL's ASCII host was stored as given (`xn--zz.example`, no punycode of anything, which no
write takes now) and a domain matching the pattern likewise: such rows keep working."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from control_plane.api.app import create_app
from shared.settings import ControlPlaneSettings
from tests.conftest import KeyFactory, bearer

OLD_HOST = "xn--zz.example"  # an ASCII host the earlier release stored as given


async def test_a_static_url_code_stored_before_still_downloads_and_reads(api: httpx.AsyncClient, make_key: KeyFactory,
                                                                         db: asyncpg.Connection[Any]) -> None:
    key = await make_key()
    made = await api.post("/v1/qr-codes", headers=bearer(key), json={
        "kind": "static", "type": "url", "content": {"url": "https://example.com/menu"}})
    assert made.status_code == 201, made.text
    code = made.json()
    await db.execute("UPDATE qr_codes SET content = $2::jsonb WHERE id = $1", code["id"],
                     f'{{"url": "https://{OLD_HOST}/menu"}}')
    image = await api.get(f"/v1/qr-codes/{code['id']}/download", headers=bearer(key))
    assert image.status_code == 200, (image.status_code, image.text[:300])
    read = await api.get(f"/v1/qr-codes/{code['id']}", headers=bearer(key))
    assert read.status_code == 200, read.text
    assert read.json()["content"] == {"url": f"https://{OLD_HOST}/menu"}
    # Written again, the same URL is judged by today's rules: a 422 naming the field.
    patched = await api.patch(f"/v1/qr-codes/{code['id']}", headers=bearer(key),
                              json={"content": {"url": f"https://{OLD_HOST}/menu"}})
    assert patched.status_code == 422 and patched.json()["errors"][0]["field"] == "content.url", patched.text


async def _client(env: dict[str, str], default_domain: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = ControlPlaneSettings.from_env({**env, "DEFAULT_DOMAIN": default_domain})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://cp.test") as client:
            yield client


@pytest.mark.parametrize(("default_domain", "given", "stored"), [
    ("bücher.test", "bücher.test", "xn--bcher-kva.test"), ("bücher.test", "BÜCHER.test.", "xn--bcher-kva.test"),
    ("qr.test", "qr.test.", "qr.test"), ("qr.test:8443", "QR.test.:8443", "qr.test:8443"),
])
async def test_the_default_domain_in_any_spelling_names_the_default_domain(
        env: dict[str, str], make_key: KeyFactory, default_domain: str, given: str, stored: str) -> None:
    key = await make_key()
    async for api in _client(env, default_domain):
        made = await api.post("/v1/qr-codes", headers=bearer(key), json={"domain": given})
        assert made.status_code == 201, made.text
        assert made.json()["domain"] == stored


@pytest.mark.parametrize("url", ["http://[fe80::1%25eth0]/x", "http://[fe80::1%eth0]/x"])
async def test_an_ipv6_zone_in_a_destination_url_is_a_422_naming_the_field(api: httpx.AsyncClient,
                                                                           make_key: KeyFactory, url: str) -> None:
    key = await make_key()
    dynamic = await api.post("/v1/qr-codes", headers=bearer(key), json={"destination": {"url": url}})
    static = await api.post("/v1/qr-codes", headers=bearer(key), json={
        "kind": "static", "type": "url", "content": {"url": url}})
    for response, field in ((dynamic, "destination.url"), (static, "content.url")):
        assert response.status_code == 422, response.text
        assert [e["field"] for e in response.json()["errors"]] == [field], response.text
        assert "zone" in response.json()["errors"][0]["message"]

"""A destination given as just its companion field: `url` is the only field a dynamic URL code needs."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import KeyFactory, bearer

PAGE = "a1c2e4f6-8b0d-4e2a-9c1b-3d5e7f9a2c4e"


async def _code(api: httpx.AsyncClient, key: str, **body: Any) -> dict[str, Any]:
    response = await api.post("/v1/qr-codes", headers=bearer(key), json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_a_code_or_group_created_with_only_a_url_redirects_to_it(api: httpx.AsyncClient,
                                                                       make_key: KeyFactory) -> None:
    key = await make_key()
    code = await _code(api, key, destination={"url": "https://example.com/only-url"})
    assert code["destination"]["type"] == "url"
    assert code["resolved"]["url"] == "https://example.com/only-url"
    group = await api.post("/v1/qr-groups", headers=bearer(key), json={"destination": {"page": PAGE}})
    assert group.status_code == 201 and group.json()["destination"]["type"] == "page", group.text
    inheriting = await _code(api, key, destination={})
    assert inheriting["destination"]["type"] is None
    ambiguous = await api.post("/v1/qr-codes", headers=bearer(key),
                               json={"destination": {"url": "https://example.com/", "page": PAGE}})
    assert ambiguous.status_code == 422
    assert ambiguous.json()["errors"][0]["field"] == "destination.type"


async def test_upsert_with_only_a_url_creates_a_code_that_redirects(api: httpx.AsyncClient,
                                                                    make_key: KeyFactory) -> None:
    key = await make_key()
    upserted = await api.post("/v1/qr-codes/upsert", headers=bearer(key),
                              json={"destination": {"url": "https://example.com/upserted"}})
    assert upserted.status_code == 201, upserted.text
    assert upserted.json()["resolved"]["url"] == "https://example.com/upserted"
    again = await api.post("/v1/qr-codes/upsert", headers=bearer(key),
                           json={"destination": {"url": "https://example.com/upserted"}, "name": "again"})
    assert again.status_code == 200 and again.json()["id"] == upserted.json()["id"]
    assert again.json()["name"] == "again"


async def test_upsert_never_returns_a_code_that_goes_elsewhere(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    url = "https://example.com/menu"
    code = await _code(api, key, destination={"type": "url", "url": url})
    patched = await api.patch(f"/v1/qr-codes/{code['id']}", headers=bearer(key),
                              json={"destination": {"type": "page", "page": PAGE}})
    assert patched.json()["destination"]["url"] == url  # a merge patch keeps the old URL
    upsert = await api.post("/v1/qr-codes/upsert", headers=bearer(key), json={"destination": {"url": url}})
    assert upsert.status_code == 201 and upsert.json()["id"] != code["id"], upsert.text
    assert upsert.json()["resolved"]["url"] == url
    kept = (await api.get(f"/v1/qr-codes/{code['id']}", headers=bearer(key))).json()
    assert kept["destination"]["type"] == "page"  # the page code was left alone


async def test_expired_destination_with_only_a_url_is_kept(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    code = await _code(api, key, destination={"type": "url", "url": "https://example.com/"})
    patched = await api.patch(f"/v1/qr-codes/{code['id']}", headers=bearer(key),
                              json={"max_scans": 5, "expired_destination": {"url": "https://example.com/over"}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["expired_destination"]["type"] == "url"
    assert patched.json()["expired_destination"]["url"] == "https://example.com/over"

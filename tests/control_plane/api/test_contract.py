"""What the issue's schemathesis run found, and versions: behaviour a client relies on."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import KeyFactory, bearer

URL = {"destination": {"type": "url", "url": "https://example.com/menu"}}


@pytest.mark.parametrize(("path", "allowed"), [
    ("/v1/qr-codes/qr_123", "DELETE, GET, HEAD, PATCH"),
    ("/v1/qr-groups/grp_123", "DELETE, GET, HEAD, PATCH"),
    ("/v1/qr-codes", "GET, HEAD, POST"),
    ("/v1/domains/dom_123", "DELETE, GET, HEAD"),
])
async def test_405_names_every_method_of_the_path(api: httpx.AsyncClient, make_key: KeyFactory, path: str,
                                                  allowed: str) -> None:
    response = await api.request("OPTIONS", path, headers=bearer(await make_key()))
    assert response.status_code == 405 and response.headers["allow"] == allowed
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("path", ["/v1/qr-codes?status=null", "/v1/qr-groups?status=null",
                                  "/v1/qr-codes?sort=newest", "/v1/qr-codes?limit=0", "/v1/folders?offset=-1"])
async def test_a_query_value_outside_the_schema_is_a_422(api: httpx.AsyncClient, make_key: KeyFactory,
                                                         path: str) -> None:
    response = await api.get(path, headers=bearer(await make_key()))
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == path.split("?")[1].split("=")[0]


async def test_a_patch_without_a_body_changes_nothing(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    code = (await api.post("/v1/qr-codes", headers=bearer(key), json=URL)).json()
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={"name": "run"})).json()
    for path in (f"/v1/qr-codes/{code['id']}", f"/v1/qr-groups/{group['id']}"):
        assert (await api.patch(path, headers=bearer(key))).status_code == 422
    assert (await api.get(f"/v1/qr-codes/{code['id']}", headers=bearer(key))).json()["version"] == code["version"]


async def test_versions_grow_and_if_match_refuses_a_stale_write(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    code = (await api.post("/v1/qr-codes", headers=bearer(key), json=URL)).json()
    path = f"/v1/qr-codes/{code['id']}"
    first = await api.patch(path, headers={**bearer(key), "If-Match": f'"{code["version"]}"'}, json={"name": "a"})
    assert first.status_code == 200 and first.json()["version"] > code["version"]
    assert first.headers["etag"] == f'"{first.json()["version"]}"'
    # A second client still holding the first read loses, and changes nothing.
    stale = await api.patch(path, headers={**bearer(key), "If-Match": f'"{code["version"]}"'}, json={"name": "b"})
    assert stale.status_code == 412 and stale.headers["content-type"] == "application/problem+json"
    put = await api.put(f"{path}/url-params/utm_source", headers=bearer(key), json={"value": "print"})
    assert put.status_code == 200
    after = (await api.get(path, headers=bearer(key))).json()
    assert after["name"] == "a" and after["version"] > first.json()["version"]
    gone = await api.delete(path, headers={**bearer(key), "If-Match": f'"{first.json()["version"]}"'})
    assert gone.status_code == 412
    assert (await api.delete(path, headers={**bearer(key), "If-Match": f'"{after["version"]}"'})).status_code == 204


async def test_group_if_match(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={"name": "run"})).json()
    path = f"/v1/qr-groups/{group['id']}"
    for stale in ('"999"', "nonsense"):
        refused = await api.patch(path, headers={**bearer(key), "If-Match": stale}, json={"name": "x"})
        assert refused.status_code == 412
    patched = await api.patch(path, headers={**bearer(key), "If-Match": f'W/"{group["version"]}"'}, json={"name": "x"})
    assert patched.status_code == 200 and patched.json()["version"] == group["version"] + 1
    assert (await api.delete(path, headers={**bearer(key), "If-Match": "*"})).status_code == 204


async def test_image_and_preview_urls_are_absolute(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    code = (await api.post("/v1/qr-codes", headers=bearer(await make_key()), json=URL)).json()
    assert code["image_url"].startswith("http://cp.test/i/") and code["preview_url"].startswith("http://cp.test/qr/")
    assert (await api.get(code["image_url"])).status_code == 200


async def test_the_analytics_range_limit_is_in_the_schema(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    spec = (await api.get("/openapi.json")).json()
    parameters = spec["paths"]["/v1/qr-codes/{code_id}/scans"]["get"]["parameters"]
    group_by = next(p for p in parameters if p["name"] == "group_by")
    assert "31 days" in group_by["description"] and "3660 days" in group_by["description"]
    key = await make_key()
    code = (await api.post("/v1/qr-codes", headers=bearer(key), json=URL)).json()
    too_long = await api.get(f"/v1/qr-codes/{code['id']}/scans", headers=bearer(key),
                             params={"since": "2000-01-01T00:00:00Z", "until": "2020-01-01T00:00:00Z"})
    assert too_long.status_code == 422 and "3660 days" in too_long.json()["errors"][0]["message"]

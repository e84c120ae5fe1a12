"""`/v1/webhook-endpoints` with the production outbound policy: https to public addresses only."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.conftest import KeyFactory, bearer

PUBLIC_URL = "https://93.184.215.14/hooks/scanroute"  # a public address literal: no DNS needed
SCOPES = ("webhooks:read", "webhooks:write")


async def create(api: httpx.AsyncClient, key: str, **body: object) -> httpx.Response:
    return await api.post("/v1/webhook-endpoints", headers=bearer(key),
                          json={"url": PUBLIC_URL, "events": ["*"], **body})


async def test_create_shows_the_secret_once_then_read_update_delete(api: httpx.AsyncClient,
                                                                    make_key: KeyFactory) -> None:
    key = await make_key(scopes=SCOPES)
    response = await create(api, key, events=["qr.created", "qr_group.updated"], description="CRM sync")
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["id"].startswith("we_") and created["object"] == "webhook_endpoint"
    assert created["url"] == PUBLIC_URL and created["events"] == ["qr.created", "qr_group.updated"]
    assert created["enabled"] is True and created["description"] == "CRM sync" and created["livemode"] is True
    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"))) >= 24

    fetched = (await api.get(f"/v1/webhook-endpoints/{created['id']}", headers=bearer(key))).json()
    assert "secret" not in fetched and fetched == {k: v for k, v in created.items() if k != "secret"}
    listed = (await api.get("/v1/webhook-endpoints", headers=bearer(key))).json()
    assert listed["object"] == "list" and listed["total"] == 1 and listed["data"] == [fetched]
    assert listed["has_more"] is False and listed["limit"] == 25 and listed["offset"] == 0

    patched = await api.patch(f"/v1/webhook-endpoints/{created['id']}", headers=bearer(key),
                              json={"events": ["*"], "enabled": False})
    assert patched.status_code == 200, patched.text
    assert patched.json()["events"] == ["*"] and patched.json()["enabled"] is False
    assert patched.json()["description"] == "CRM sync" and "secret" not in patched.json()

    assert (await api.delete(f"/v1/webhook-endpoints/{created['id']}", headers=bearer(key))).status_code == 204
    gone = await api.get(f"/v1/webhook-endpoints/{created['id']}", headers=bearer(key))
    assert gone.status_code == 404 and gone.headers["content-type"] == "application/problem+json"


async def test_rotating_shows_a_new_secret_once(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key(scopes=SCOPES)
    created = (await create(api, key)).json()
    rotated = await api.post(f"/v1/webhook-endpoints/{created['id']}/rotate-secret", headers=bearer(key))
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"].startswith("whsec_") and rotated.json()["secret"] != created["secret"]
    assert rotated.json()["previous_secret_expires_at"].endswith("Z")
    assert rotated.headers["cache-control"] == "no-store"
    fetched = (await api.get(f"/v1/webhook-endpoints/{created['id']}", headers=bearer(key))).json()
    assert "secret" not in fetched


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://localhost:8443/hook",
    "https://10.1.2.3/hook",
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://[fd00:ec2::254]/hook",
    "https://224.0.0.1/hook",
    "https://0.0.0.0/hook",
])
async def test_internal_addresses_are_refused(api: httpx.AsyncClient, make_key: KeyFactory, url: str) -> None:
    key = await make_key(scopes=SCOPES)
    response = await create(api, key, url=url)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "https://scanroute.dev/problems/validation"
    assert problem["errors"][0]["field"] == "url" and "address" in problem["errors"][0]["message"]
    assert (await api.get("/v1/webhook-endpoints", headers=bearer(key))).json()["total"] == 0


async def test_an_update_is_checked_like_a_create(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key(scopes=SCOPES)
    created = (await create(api, key)).json()
    response = await api.patch(f"/v1/webhook-endpoints/{created['id']}", headers=bearer(key),
                               json={"url": "https://169.254.169.254/"})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "url"
    fetched = (await api.get(f"/v1/webhook-endpoints/{created['id']}", headers=bearer(key))).json()
    assert fetched["url"] == PUBLIC_URL


@pytest.mark.parametrize(("body", "field"), [
    ({"url": "http://93.184.215.14/hook"}, "url"),
    ({"url": "ftp://93.184.215.14/hook"}, "url"),
    ({"url": "https://user:pw@93.184.215.14/hook"}, "url"),
    ({"events": ["qr.exploded"]}, "events"),
    ({"events": ["*", "qr.created"]}, "events"),
    ({"events": []}, "events"),
    ({"colour": "red"}, "colour"),
])
async def test_invalid_bodies_are_422(api: httpx.AsyncClient, make_key: KeyFactory, body: dict[str, object],
                                      field: str) -> None:
    key = await make_key(scopes=SCOPES)
    response = await create(api, key, **body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field


async def test_other_orgs_and_the_other_mode_see_nothing(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    owner = await make_key(scopes=SCOPES)
    created = (await create(api, owner)).json()
    strangers = [await make_key("globex", scopes=SCOPES), await make_key(scopes=SCOPES, livemode=False)]
    for stranger in strangers:
        base = f"/v1/webhook-endpoints/{created['id']}"
        for method, path in (("GET", base), ("PATCH", base), ("DELETE", base), ("GET", f"{base}/deliveries"),
                             ("POST", f"{base}/test"), ("POST", f"{base}/rotate-secret")):
            response = await api.request(method, path, headers=bearer(stranger),
                                         json={} if method == "PATCH" else None)
            assert response.status_code == 404, (method, path, response.text)
        assert (await api.get("/v1/webhook-endpoints", headers=bearer(stranger))).json()["total"] == 0


async def test_scopes(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    qr_only = await make_key(scopes=("qr:read", "qr:write"))
    reader = await make_key(scopes=("webhooks:read",))
    assert (await api.get("/v1/webhook-endpoints", headers=bearer(qr_only))).status_code == 403
    assert (await create(api, reader)).status_code == 403
    assert (await api.get("/v1/webhook-endpoints", headers=bearer(reader))).status_code == 200
    assert (await api.get("/v1/webhook-endpoints")).status_code == 401


async def test_a_disabled_endpoint_cannot_be_sent_a_test_event(api: httpx.AsyncClient,
                                                               make_key: KeyFactory) -> None:
    key = await make_key(scopes=SCOPES)
    created = (await create(api, key, enabled=False)).json()
    response = await api.post(f"/v1/webhook-endpoints/{created['id']}/test", headers=bearer(key))
    assert response.status_code == 409 and response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("url", ["https://xn--zz.example/hook", "https://hooks.xn--a.example/hook"])
async def test_an_invalid_a_label_is_refused_as_such_before_any_lookup(api: httpx.AsyncClient, make_key: KeyFactory,
                                                                      url: str) -> None:
    """Not "does not resolve": the name is no name (IDNA 2008), whatever DNS would say (docs/webhooks.md)."""
    response = await create(api, await make_key(scopes=SCOPES), url=url)
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error["field"] == "url" and "invalid host name" in error["message"], error

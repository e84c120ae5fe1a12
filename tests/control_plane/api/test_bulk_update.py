"""`POST /v1/qr-codes/bulk-update`: tags, folder, status or group on many codes, all or nothing."""

from __future__ import annotations

import httpx

from tests.conftest import KeyFactory, bearer


async def _codes(api: httpx.AsyncClient, key: str, count: int) -> list[str]:
    return [(await api.post("/v1/qr-codes", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://example.com"}})).json()["id"] for _ in range(count)]


async def test_bulk_update_sets_fields_on_every_code_with_one_event_each(api: httpx.AsyncClient,
                                                                         make_key: KeyFactory):
    key = await make_key(scopes=("qr:read", "qr:write", "webhooks:read"))
    ids = await _codes(api, key, 3)
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={"name": "run"})).json()
    response = await api.post("/v1/qr-codes/bulk-update", headers=bearer(key), json={
        "ids": ids[:2], "set": {"tags": ["spring"], "status": "inactive", "group_id": group["id"]}})
    assert response.status_code == 200 and response.json() == {"updated": 2}
    codes = {c["id"]: c for c in (await api.get("/v1/qr-codes", headers=bearer(key))).json()["data"]}
    for code_id in ids[:2]:
        assert codes[code_id]["tags"] == ["spring"] and codes[code_id]["status"] == "inactive"
        assert codes[code_id]["group_id"] == group["id"]
    assert codes[ids[2]]["tags"] == [] and codes[ids[2]]["status"] is None
    events = (await api.get("/v1/events", headers=bearer(key), params={"limit": 100})).json()["data"]
    assert sorted(e["data"]["object"]["id"] for e in events if e["type"] == "qr.updated") == sorted(ids[:2])


async def test_bulk_update_is_all_or_nothing(api: httpx.AsyncClient, make_key: KeyFactory):
    key = await make_key()
    ids = await _codes(api, key, 2)
    stranger = (await _codes(api, await make_key("another org"), 1))[0]
    response = await api.post("/v1/qr-codes/bulk-update", headers=bearer(key),
                              json={"ids": [*ids, stranger], "set": {"status": "inactive"}})
    assert response.status_code == 404
    statuses = {c["status"] for c in (await api.get("/v1/qr-codes", headers=bearer(key))).json()["data"]}
    assert statuses == {None}


async def test_bulk_update_validates_like_the_api(api: httpx.AsyncClient, make_key: KeyFactory):
    key = await make_key()
    ids = await _codes(api, key, 1)
    nothing = await api.post("/v1/qr-codes/bulk-update", headers=bearer(key), json={"ids": ids, "set": {}})
    too_many = await api.post("/v1/qr-codes/bulk-update", headers=bearer(key),
                              json={"ids": ids * 1001, "set": {"status": "active"}})
    unknown = await api.post("/v1/qr-codes/bulk-update", headers=bearer(key),
                             json={"ids": ids, "set": {"name": "x"}})
    for response in (nothing, too_many, unknown):
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"

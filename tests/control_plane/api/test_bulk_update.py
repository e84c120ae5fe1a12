"""`POST /v1/qr-codes/bulk-update`: tags, folder, status or group on many codes, all or nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
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


async def test_concurrent_bulk_updates_in_other_orders_both_succeed(api: httpx.AsyncClient, make_key: KeyFactory):
    key = await make_key()
    ids = await _codes(api, key, 30)
    for attempt in range(3):
        a, b = await asyncio.gather(
            api.post("/v1/qr-codes/bulk-update", headers=bearer(key),
                     json={"ids": ids, "set": {"tags": [f"a{attempt}"]}}),
            api.post("/v1/qr-codes/bulk-update", headers=bearer(key),
                     json={"ids": ids[::-1], "set": {"status": "inactive"}}))
        assert (a.status_code, b.status_code) == (200, 200), (a.text, b.text)


async def test_a_bulk_update_racing_its_group_delete_never_answers_500(api: httpx.AsyncClient,
                                                                      make_key: KeyFactory):
    key = await make_key()
    for attempt in range(4):
        group = (await api.post("/v1/qr-groups", headers=bearer(key), json={"name": "run"})).json()
        minted = await api.post(f"/v1/qr-groups/{group['id']}/codes", headers=bearer(key), json={"count": 40})
        ids = [c["id"] for c in minted.json()["data"]][::-1]
        bulk, delete = await asyncio.gather(
            api.post("/v1/qr-codes/bulk-update", headers=bearer(key), json={"ids": ids, "set": {"tags": ["x"]}}),
            api.delete(f"/v1/qr-groups/{group['id']}", headers=bearer(key)))
        assert (bulk.status_code, delete.status_code) == (200, 204), (attempt, bulk.text, delete.text)


async def test_a_deadlock_is_a_503_to_retry_not_a_500(api: httpx.AsyncClient, make_key: KeyFactory,
                                                      db: asyncpg.Connection[Any]):
    """A PATCH that moves a code into a group waits for a transaction holding the group, which then waits for
    the code: PostgreSQL rolls one back (the PATCH, which waited first and so detects the cycle first)."""
    key = await make_key()
    code_id = (await _codes(api, key, 1))[0]
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={"name": "run"})).json()
    await db.execute("SET deadlock_timeout = '10s'")  # the other side of the cycle is never the victim
    async with db.transaction():
        await db.execute("SELECT 1 FROM qr_groups WHERE id = $1 FOR UPDATE", group["id"])
        patch = asyncio.create_task(api.patch(f"/v1/qr-codes/{code_id}", headers=bearer(key),
                                              json={"group_id": group["id"]}))
        for _ in range(100):  # until the PATCH holds the code and waits for the group
            await asyncio.sleep(0.02)
            if await db.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"):
                break
        await db.execute("SELECT 1 FROM qr_codes WHERE id = $1 FOR UPDATE", code_id)
    response = await patch
    assert response.status_code == 503 and response.headers["retry-after"] == "1", response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_bulk_update_racing_its_folder_delete_never_deadlocks(api: httpx.AsyncClient, make_key: KeyFactory):
    """Both lock the codes by id before the folder (docs/api.md §2.3): one waits for the other, and neither is
    rolled back as a deadlock (503). The bulk update that comes second finds the folder gone (422)."""
    key = await make_key()
    ids = (await _codes(api, key, 20))[::-1]
    outcomes = set()
    for attempt in range(30):
        folder = (await api.post("/v1/folders", headers=bearer(key), json={"name": f"menus {attempt}"})).json()
        moved = await api.post("/v1/qr-codes/bulk-update", headers=bearer(key),
                               json={"ids": ids, "set": {"folder_id": folder["id"]}})
        assert moved.status_code == 200, moved.text
        bulk, delete = await asyncio.gather(
            api.post("/v1/qr-codes/bulk-update", headers=bearer(key),
                     json={"ids": ids, "set": {"folder_id": folder["id"], "tags": [f"t{attempt}"]}}),
            api.delete(f"/v1/folders/{folder['id']}", headers=bearer(key)))
        assert delete.status_code == 204, (attempt, delete.text)
        assert bulk.status_code in (200, 422), (attempt, bulk.text)
        outcomes.add(bulk.status_code)
        if bulk.status_code == 422:
            assert "folder" in bulk.text
    codes = (await api.get("/v1/qr-codes", headers=bearer(key), params={"limit": 100})).json()["data"]
    assert {c["folder_id"] for c in codes} == {None}, "every folder deleted, whoever came first"

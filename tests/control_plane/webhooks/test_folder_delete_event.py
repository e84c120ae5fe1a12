"""Deleting a folder detaches its codes (docs/api.md §2.3), and a subscriber hears of each (docs/webhooks.md,
"Change paths")."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from control_plane.webhooks.dispatcher import Dispatcher
from tests.conftest import KeyFactory, bearer
from tests.control_plane.webhooks.conftest import WEBHOOK_SCOPES, Receiver, create_endpoint


async def create_code(api: httpx.AsyncClient, key: str, **fields: Any) -> dict[str, Any]:
    response = await api.post("/v1/qr-codes", headers=bearer(key), json=fields)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_deleting_a_folder_tells_subscribers_its_codes_left_it(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, dispatcher: Dispatcher) -> None:
    key = await make_key(scopes=WEBHOOK_SCOPES)
    await create_endpoint(api, key, receiver.url())
    folder = (await api.post("/v1/folders", headers=bearer(key), json={"name": "Menus"})).json()
    inside = [await create_code(api, key, name=name, folder_id=folder["id"]) for name in ("Alpha", "Beta")]
    await create_code(api, key, name="Elsewhere")
    await dispatcher.drain()
    seen = len(receiver.requests)

    deleted = await api.delete(f"/v1/folders/{folder['id']}", headers=bearer(key))
    assert deleted.status_code == 204, deleted.text
    now = (await api.get(f"/v1/qr-codes/{inside[0]['id']}", headers=bearer(key))).json()
    assert now["folder_id"] is None
    assert now["version"] == inside[0]["version"] + 1

    await dispatcher.drain()
    events = [orjson.loads(r.body) for r in receiver.requests[seen:]]
    assert sorted((e["type"], e["data"]["object"]["id"], e["data"]["object"]["folder_id"],
                   e["data"]["previous_attributes"]) for e in events) == sorted(
        ("qr.updated", code["id"], None, {"folder_id": folder["id"]}) for code in inside)

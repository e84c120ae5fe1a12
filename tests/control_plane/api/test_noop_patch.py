"""A write that changes nothing is no change (docs/api.md §4.1, "Versions"): the same `version` and `ETag`, no
`qr.updated`/`qr_group.updated` event, so another client's `If-Match` on that version still holds. `If-Match`
is still checked first."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from tests.conftest import KeyFactory, bearer

SCOPES = ("qr:read", "qr:write", "webhooks:read")
DESIGN = {"colors": {"foreground": "#000000"}, "shapes": {"body": "dots"}}


async def _events(api: httpx.AsyncClient, h: dict[str, str], kind: str = "qr.updated") -> list[dict[str, Any]]:
    return list((await api.get(f"/v1/events?type={kind}", headers=h)).json()["data"])


async def test_null_content_on_a_dynamic_code_changes_nothing(api: httpx.AsyncClient, make_key: KeyFactory):
    h = bearer(await make_key(scopes=SCOPES))
    d = (await api.post("/v1/qr-codes", headers=h, json={"destination": {"url": "https://e.com"}})).json()
    r = await api.patch(f"/v1/qr-codes/{d['id']}", headers=h, json={"content": None})
    assert r.status_code == 200 and r.json() == d
    assert (r.json()["version"], r.headers["etag"]) == (d["version"], f'"{d["version"]}"')
    # another client that read the code before this no-op still holds a valid version
    other = await api.patch(f"/v1/qr-codes/{d['id']}", headers={**h, "If-Match": f'"{d["version"]}"'},
                            json={"name": "x"})
    assert other.status_code == 200 and other.json()["version"] == d["version"] + 1
    assert [e["data"]["previous_attributes"] for e in await _events(api, h)] == [{"name": ""}]


async def test_null_group_on_a_static_code_changes_nothing(api: httpx.AsyncClient, make_key: KeyFactory):
    h = bearer(await make_key(scopes=SCOPES))
    s = (await api.post("/v1/qr-codes", headers=h,
                        json={"kind": "static", "type": "text", "content": {"text": "x"}})).json()
    r = await api.patch(f"/v1/qr-codes/{s['id']}", headers=h, json={"group_id": None})
    assert r.status_code == 200 and r.json()["version"] == s["version"]
    assert await _events(api, h) == []


async def test_same_value_patch_of_a_code_is_no_change(api: httpx.AsyncClient, make_key: KeyFactory):
    """A sync script re-sending a code's state: no new version, no event; a real change still is one."""
    h = bearer(await make_key(scopes=SCOPES))
    d = (await api.post("/v1/qr-codes", headers=h, json={
        "name": "A", "tags": ["t"], "destination": {"url": "https://e.com"}, "url_params": {"u": "1"},
        "max_scans": 5, "design": DESIGN}))
    assert d.status_code == 201, d.text
    d = d.json()
    same = {name: d[name] for name in ("name", "tags", "status", "group_id", "folder_id", "url_params",
                                       "properties", "max_scans", "valid_until", "rules", "split")}
    r = await api.patch(f"/v1/qr-codes/{d['id']}", headers=h, json={
        **same, "destination": {"url": "https://e.com"}, "design": DESIGN, "password": None})
    assert r.status_code == 200 and r.json()["version"] == 1 and r.headers["etag"] == '"1"'
    assert (await api.put(f"/v1/qr-codes/{d['id']}/url-params/u", headers=h, json={"value": "1"})).status_code == 200
    assert (await api.get(f"/v1/qr-codes/{d['id']}", headers=h)).json()["version"] == 1
    assert await _events(api, h) == []
    changed = await api.patch(f"/v1/qr-codes/{d['id']}", headers=h, json={"name": "B"})
    assert changed.json()["version"] == 2
    assert [e["data"]["previous_attributes"] for e in await _events(api, h)] == [{"name": "A"}]


async def test_a_new_password_is_a_change_though_the_object_shows_none(api: httpx.AsyncClient,
                                                                        make_key: KeyFactory):
    h = bearer(await make_key(scopes=SCOPES))
    d = (await api.post("/v1/qr-codes", headers=h, json={"destination": {"url": "https://e.com"},
                                                         "password": "first one"})).json()
    r = await api.patch(f"/v1/qr-codes/{d['id']}", headers=h, json={"password": "second one"})
    assert r.json()["version"] == 2 and len(await _events(api, h)) == 1


async def test_a_no_op_patch_still_checks_if_match(api: httpx.AsyncClient, make_key: KeyFactory):
    h = bearer(await make_key(scopes=SCOPES))
    d = (await api.post("/v1/qr-codes", headers=h, json={"name": "A", "destination": {"url": "https://e.com"}})).json()
    await api.patch(f"/v1/qr-codes/{d['id']}", headers=h, json={"name": "B"})
    stale = await api.patch(f"/v1/qr-codes/{d['id']}", headers={**h, "If-Match": '"1"'}, json={"name": "B"})
    assert stale.status_code == 412


async def test_same_value_patch_of_a_group_is_no_change(api: httpx.AsyncClient, make_key: KeyFactory):
    h = bearer(await make_key(scopes=SCOPES))
    g = (await api.post("/v1/qr-groups", headers=h, json={
        "name": "G", "destination": {"url": "https://e.com"}, "max_scans": 3, "properties": {"p": "1"}})).json()
    r = await api.patch(f"/v1/qr-groups/{g['id']}", headers=h, json={
        "name": "G", "description": g["description"], "destination": {"url": "https://e.com"}, "max_scans": 3,
        "properties": {"p": "1"}, "valid_until": None})
    assert r.status_code == 200 and r.json() == g and r.headers["etag"] == f'"{g["version"]}"'
    assert await _events(api, h, "qr_group.updated") == []
    stale = await api.patch(f"/v1/qr-groups/{g['id']}", headers={**h, "If-Match": '"7"'}, json={"name": "G"})
    assert stale.status_code == 412
    changed = await api.patch(f"/v1/qr-groups/{g['id']}", headers=h, json={"max_scans": 4})
    assert changed.json()["version"] == g["version"] + 1
    assert [e["data"]["previous_attributes"] for e in await _events(api, h, "qr_group.updated")] == \
        [{"max_scans": 3}]


async def test_bulk_update_records_events_only_for_codes_it_changes(api: httpx.AsyncClient, make_key: KeyFactory):
    h = bearer(await make_key(scopes=SCOPES))
    ids = [(await api.post("/v1/qr-codes", headers=h, json={"tags": tags, "destination": {"url": "https://e.com"}})
            ).json()["id"] for tags in (["a"], ["b"])]
    r = await api.post("/v1/qr-codes/bulk-update", headers=h, json={"ids": ids, "set": {"tags": ["a"]}})
    assert r.status_code == 200 and r.json() == {"updated": 2}
    versions = [(await api.get(f"/v1/qr-codes/{i}", headers=h)).json()["version"] for i in ids]
    assert versions == [1, 2]
    assert [e["data"]["object"]["id"] for e in await _events(api, h)] == [ids[1]]


async def test_an_upsert_that_finds_the_code_as_it_is_changes_nothing(api: httpx.AsyncClient, make_key: KeyFactory):
    h = bearer(await make_key(scopes=SCOPES))
    body = {"name": "A", "tags": ["t"], "destination": {"url": "https://e.com/u"}}
    made = await api.post("/v1/qr-codes/upsert", headers=h, json=body)
    again = await api.post("/v1/qr-codes/upsert", headers=h, json=body)
    assert (made.status_code, again.status_code) == (201, 200)
    assert again.json() == made.json() and await _events(api, h) == []


async def test_valid_until_is_kept_to_the_second_it_is_shown_at(api: httpx.AsyncClient, make_key: KeyFactory,
                                                               db: asyncpg.Connection[Any]):
    """A fraction is cut when stored, as the object shows it: a patch to the instant shown is no change, and the
    edge closes the code at that instant (not up to a second later)."""
    h = bearer(await make_key(scopes=SCOPES))
    for kind in ("qr-codes", "qr-groups"):
        body = {"destination": {"url": "https://e.com"}, "valid_until": "2030-01-01T00:00:00.900Z"}
        made = (await api.post(f"/v1/{kind}", headers=h, json=body)).json()
        assert made["valid_until"] == "2030-01-01T00:00:00Z"
        table = "qr_codes" if kind == "qr-codes" else "qr_groups"
        stored = await db.fetchval(f"SELECT valid_until FROM {table} WHERE id = $1", made["id"])
        assert stored.microsecond == 0
        patched = await api.patch(f"/v1/{kind}/{made['id']}", headers=h, json={"valid_until": "2030-01-01T00:00:00Z"})
        assert patched.status_code == 200 and patched.json()["version"] == made["version"]

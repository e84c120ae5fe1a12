from __future__ import annotations

import json
from typing import Any

import httpx

from tests.conftest import KeyFactory, bearer

PAGE = "a1c2e4f6-8b0d-4e2a-9c1b-3d5e7f9a2c4e"
BOT = "0b7e2f3c-1111-4a5b-8c9d-0e1f2a3b4c5d"


async def seed_group(api: httpx.AsyncClient, key: str, **extra: Any) -> dict[str, Any]:
    body = {"name": "Fall 2024 tabletop run", "status": "active",
            "destination": {"type": "page", "page": PAGE},
            "url_params": {"utm_campaign": "fall24", "utm_medium": "print"}, **extra}
    response = await api.post("/v1/qr-groups", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_seed_worked_example_through_the_api(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    group = await seed_group(api, key)
    assert group["id"].startswith("grp_") and group["code_count"] == 0
    inheriting = (await api.post("/v1/qr-codes", headers=bearer(key), json={
        "name": "Table 12", "group_id": group["id"], "url_params": {"utm_medium": "table"}})).json()
    assert inheriting["resolved"] == {
        "status": "active", "destination": {"type": "page", "page": PAGE}, "source": "group",
        "url": f"https://pages.example.com/p/{PAGE}?utm_campaign=fall24&utm_medium=table"}
    assert inheriting["short_url"] == f"https://qr.test/{inheriting['slug']}"
    overriding = (await api.post("/v1/qr-codes", headers=bearer(key), json={
        "group_id": group["id"], "destination": {"type": "chatbot", "chatbot": BOT}})).json()
    assert overriding["resolved"]["source"] == "code"
    assert overriding["resolved"]["url"].startswith(f"https://chat.example.com/c/{BOT}?utm_campaign=fall24")

    paused = await api.patch(f"/v1/qr-groups/{group['id']}", headers=bearer(key), json={"status": "inactive"})
    assert paused.status_code == 200 and paused.json()["code_count"] == 2
    again = (await api.get(f"/v1/qr-codes/{inheriting['id']}", headers=bearer(key))).json()
    assert again["resolved"]["status"] == "inactive" and again["resolved"]["url"] is None


async def test_reattach_a_broken_out_child_with_a_null_type(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    group = await seed_group(api, key)
    code = (await api.post("/v1/qr-codes", headers=bearer(key), json={
        "group_id": group["id"], "destination": {"type": "url", "url": "https://own.example.com/x"}})).json()
    assert code["resolved"]["source"] == "code"
    patched = await api.patch(f"/v1/qr-codes/{code['id']}", headers=bearer(key),
                              json={"destination": {"type": None}})
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["destination"]["type"] is None and body["destination"]["url"] == "https://own.example.com/x"
    assert body["resolved"]["source"] == "group"


async def test_dynamic_code_with_only_a_url(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    response = await api.post("/v1/qr-codes", headers=bearer(key),
                              json={"destination": {"type": "url", "url": "https://example.com/menu"}})
    assert response.status_code == 201
    code = response.json()
    assert code["id"].startswith("qr_") and len(code["id"]) >= 3 + 24 and len(code["slug"]) == 7
    assert code["kind"] == "dynamic" and code["status"] is None and code["scan_count"] == 0
    assert code["resolved"]["url"] == "https://example.com/menu"
    listed = (await api.get("/v1/qr-codes", headers=bearer(key))).json()
    assert listed["object"] == "list" and listed["total"] == 1 and listed["data"][0]["id"] == code["id"]


async def test_validation_errors_are_problem_json(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    cases = [
        ({"destination": {"type": "url", "url": "javascript:alert(1)"}}, "destination.url"),
        ({"destination": {"type": "url"}}, "destination.url"),
        ({"destination": {"type": "page", "page": "not-a-uuid"}}, "destination.page"),
        ({"colour": "red"}, "colour"),
        ({"status": "paused"}, "status"),
        ({"group_id": "grp_000000000000000000000000"}, "group_id"),
        ({"slug": "healthz"}, "slug"),
    ]
    for body, field in cases:
        response = await api.post("/v1/qr-codes", headers=bearer(key), json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"] == "https://scanroute.dev/problems/validation"
        assert field in [e["field"] for e in problem["errors"]], problem
    malformed = await api.post("/v1/qr-codes", headers=bearer(key), content=b"{nope")
    assert malformed.status_code == 400 and malformed.json()["status"] == 400


async def test_slug_kind_and_domain_never_change(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    code = (await api.post("/v1/qr-codes", headers=bearer(key), json={"slug": "table-12"})).json()
    assert code["slug"] == "table-12"
    for body in ({"slug": "other"}, {"kind": "static"}, {"domain": "x.example"}):
        response = await api.patch(f"/v1/qr-codes/{code['id']}", headers=bearer(key), json=body)
        assert response.status_code == 422
    taken = await api.post("/v1/qr-codes", headers=bearer(key), json={"slug": "table-12"})
    assert taken.status_code == 409


async def test_keys_scopes_and_isolation(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    writer, reader = await make_key("acme"), await make_key("acme", scopes=("qr:read",))
    other, test_mode = await make_key("globex"), await make_key("acme", livemode=False)
    code = (await api.post("/v1/qr-codes", headers=bearer(writer), json={})).json()
    assert (await api.get(f"/v1/qr-codes/{code['id']}", headers=bearer(reader))).status_code == 200
    assert (await api.post("/v1/qr-codes", headers=bearer(reader), json={})).status_code == 403
    for foreign in (other, test_mode):
        assert (await api.get(f"/v1/qr-codes/{code['id']}", headers=bearer(foreign))).status_code == 404
        assert (await api.get("/v1/qr-codes", headers=bearer(foreign))).json()["total"] == 0
    assert (await api.get("/v1/qr-codes")).status_code == 401
    assert (await api.get("/v1/qr-codes", headers=bearer("qr_live_" + "x" * 32))).status_code == 401


async def test_url_params_merge_patch(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    code = (await api.post("/v1/qr-codes", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://x.example/"}, "url_params": {"a": "1", "b": "2"}})).json()
    patched = (await api.patch(f"/v1/qr-codes/{code['id']}", headers=bearer(key),
                               json={"url_params": {"a": "9", "b": None, "c": "3"}})).json()
    assert list(patched["url_params"].items()) == [("a", "9"), ("c", "3")]
    assert patched["resolved"]["url"] == "https://x.example/?a=9&c=3"


async def test_every_change_writes_an_event(api: httpx.AsyncClient, make_key: KeyFactory, db: Any) -> None:
    key = await make_key()
    group = await seed_group(api, key)
    await api.patch(f"/v1/qr-groups/{group['id']}", headers=bearer(key),
                    json={"destination": {"type": "url", "url": "https://new.example/"}})
    rows = await db.fetch("SELECT type, data FROM events ORDER BY seq")
    assert [r["type"] for r in rows] == ["qr_group.created", "qr_group.updated"]
    data = json.loads(rows[1]["data"])
    assert data["previous_attributes"]["destination"]["type"] == "page"
    assert data["object"]["destination"]["url"] == "https://new.example/"


async def test_static_codes_encode_their_content(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    created = await api.post("/v1/qr-codes", headers=bearer(key), json={
        "kind": "static", "type": "wifi", "name": "Guest Wi-Fi",
        "content": {"ssid": "Café;Guest", "password": "p@ss:word", "encryption": "WPA"}})
    assert created.status_code == 201, created.text
    code = created.json()
    assert code["id"].startswith("sqr_") and code["slug"] is None and code["short_url"] is None
    assert code["scan_count"] is None and code["resolved"] is None and code["image_url"]
    patched = await api.patch(f"/v1/qr-codes/{code['id']}", headers=bearer(key),
                              json={"content": {"ssid": "Guest2", "encryption": "nopass"}})
    assert patched.status_code == 200 and patched.json()["content"]["ssid"] == "Guest2"
    assert patched.json()["image_url"] != code["image_url"]
    refused = [
        {"kind": "static", "type": "wifi", "content": {"encryption": "WPA"}},
        {"kind": "static", "type": "text", "content": {"text": "x" * 3000}},
        {"kind": "static", "type": "url", "content": {"url": "https://x.example"}, "group_id": "grp_x"},
        {"destination": {"type": "url", "url": "https://x.example"}, "content": {"text": "x"}},
    ]
    for body in refused:
        response = await api.post("/v1/qr-codes", headers=bearer(key), json=body)
        assert response.status_code == 422, (body, response.text)
    on_static = await api.patch(f"/v1/qr-codes/{code['id']}", headers=bearer(key),
                                json={"destination": {"type": "url", "url": "https://x.example"}})
    assert on_static.status_code == 422


async def test_q_is_a_substring_not_a_like_pattern(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    for n, name in enumerate(("50% off", "a_b", "axb", "back\\slash", "plain")):
        # `q` matches a code's slug too: slugs of our own that no query below is part of (a random one can be)
        assert (await api.post("/v1/qr-codes", headers=bearer(key),
                               json={"name": name, "slug": f"code{n}"})).status_code == 201
        assert (await api.post("/v1/qr-groups", headers=bearer(key), json={"name": name})).status_code == 201
    for path in ("/v1/qr-codes", "/v1/qr-groups"):
        found = {}
        for q in ("%", "_", "a_b", "\\", "K\\S", "AX"):
            listed = (await api.get(path, headers=bearer(key), params={"q": q})).json()["data"]
            found[q] = sorted(c["name"] for c in listed)
        assert found == {"%": ["50% off"], "_": ["a_b"], "a_b": ["a_b"], "\\": ["back\\slash"],
                         "K\\S": ["back\\slash"], "AX": ["axb"]}, (path, found)


async def test_a_value_postgresql_refuses_is_a_422_in_the_request_s_terms(api: httpx.AsyncClient,
                                                                           make_key: KeyFactory) -> None:
    """A NUL passes validation but not PostgreSQL: 422, saying so without quoting PostgreSQL's own message."""
    key = await make_key()
    response = await api.get("/v1/qr-codes", headers=bearer(key), params={"q": "a\x00b"})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    detail = response.json()["detail"]
    assert "NUL" in detail and "0x00" not in detail and "UTF8" not in detail, detail


async def test_a_nul_in_the_body_is_a_422_naming_its_field(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    """docs/api.md §1: a 422 names its field, so a client (an import script, a form) can tell which value to fix;
    with several, the first in the body."""
    h = bearer(await make_key())
    for body, field in (({"destination": {"url": "https://e.com"}, "tags": ["ok", "b\u0000d", "\u0000"]}, "tags.1"),
                        ({"name": "a\u0000", "tags": ["\u0000"]}, "name"),
                        ({"properties": {"ok": "v", "k": "x\u0000"}}, "properties.k"),
                        ({"properties": {"k\u0000": "v"}}, "properties.k\u0000")):
        r = await api.post("/v1/qr-codes", headers=h, json=body)
        assert r.status_code == 422
        assert [e["field"] for e in r.json()["errors"]] == [field], r.json()["errors"]
    patch = await api.patch("/v1/qr-codes/qr_nonexistent", headers=h, json={"design": {"logo": {"url": "\u0000"}}})
    assert [e["field"] for e in patch.json()["errors"]] == ["design.logo.url"]

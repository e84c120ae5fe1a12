"""Rules, split, validity and password on codes and groups through the API (docs/rules.md)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import KeyFactory, bearer

RULE = {"if": {"device": ["ios"]}, "destination": {"type": "url", "url": "https://apps.apple.com/app/id1"}}
SPLIT = [{"weight": 50, "destination": {"type": "url", "url": "https://example.com/a"}},
         {"weight": 50, "destination": {"type": "url", "url": "https://example.com/b"}}]


async def post(api: httpx.AsyncClient, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return await api.post(path, headers=bearer(key), json=body)


@pytest.mark.parametrize(("body", "field"), [
    ({"rules": [{"if": {"time": {"from": "11:30", "to": "25:00"}}, "destination": RULE["destination"]}]},
     "rules.0.if.time.to"),
    ({"rules": [RULE] * 21}, "rules"),
    ({"split": SPLIT[:1]}, "split"),
    ({"split": [{**SPLIT[0], "weight": 0}, SPLIT[1]]}, "split.0.weight"),
    ({"valid_from": "2026-07-01T00:00:00Z", "valid_until": "2026-06-01T00:00:00Z"}, "valid_until"),
    ({"valid_until": "next tuesday"}, "valid_until"),
    ({"max_scans": 0}, "max_scans"),
    ({"expired_destination": {"type": "url"}}, "expired_destination.url"),
    ({"password": "abc"}, "password"),
])
@pytest.mark.parametrize("path", ["/v1/qr-codes", "/v1/qr-groups"])
async def test_invalid_fields_are_422_problems_naming_the_field(
        api: httpx.AsyncClient, make_key: KeyFactory, body: dict[str, Any], field: str, path: str) -> None:
    response = await post(api, await make_key(), path, body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_fields_round_trip_and_merge_patch(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    code = (await post(api, key, "/v1/qr-codes", {
        "destination": {"type": "url", "url": "https://example.com/"}, "rules": [RULE], "split": SPLIT,
        "valid_until": "2026-12-31T23:00:00Z", "max_scans": 5000, "password": "open sesame",
        "expired_destination": {"type": "url", "url": "https://example.com/over"}})).json()
    assert (code["rules"], code["split"], code["valid_from"], code["valid_until"], code["max_scans"]) == \
        ([RULE], SPLIT, None, "2026-12-31T23:00:00Z", 5000)
    assert code["expired_destination"]["url"] == "https://example.com/over" and code["has_password"] is True
    assert "open sesame" not in str(code) and "password" not in code
    path = f"/v1/qr-codes/{code['id']}"
    patched = (await api.patch(path, headers=bearer(key), json={
        "split": None, "max_scans": 10, "expired_destination": {"url": "https://example.com/later"}})).json()
    assert patched["split"] is None and patched["rules"] == [RULE] and patched["max_scans"] == 10
    assert patched["expired_destination"]["url"] == "https://example.com/later"
    assert patched["has_password"] is True and patched["valid_until"] == "2026-12-31T23:00:00Z"
    cleared = (await api.patch(path, headers=bearer(key), json={"password": None, "rules": []})).json()
    assert cleared["has_password"] is False and cleared["rules"] is None
    refused = await api.patch(path, headers=bearer(key), json={"valid_from": "2027-01-01T00:00:00Z"})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "valid_until"


async def test_resolved_shows_the_effective_rules_split_and_validity(
        api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    group = (await post(api, key, "/v1/qr-groups", {
        "destination": {"type": "url", "url": "https://example.com/g"}, "rules": [RULE], "split": SPLIT,
        "max_scans": 100, "password": "open sesame"})).json()
    assert group["has_password"] is True and group["split"] == SPLIT
    own_rule = {"if": {"country": ["DE"]}, "destination": {"type": "url", "url": "https://example.com/de"}}
    code = (await post(api, key, "/v1/qr-codes", {"group_id": group["id"], "rules": [own_rule],
                                                  "valid_until": "2026-12-31T23:00:00Z"})).json()
    resolved = code["resolved"]
    assert resolved["rules"] == [{"source": "code", **own_rule}, {"source": "group", **RULE}]
    assert resolved["split"] == {"source": "group", "variants": SPLIT}
    assert (resolved["max_scans"], resolved["valid_until"], resolved["has_password"]) == \
        (100, "2026-12-31T23:00:00Z", True)
    assert code["has_password"] is False and code["max_scans"] is None  # the code's own fields
    plain = (await post(api, key, "/v1/qr-codes", {"destination": {"type": "url", "url": "https://e.com/"}})).json()
    assert "rules" not in plain["resolved"]  # nothing set: the plain shape


async def test_static_codes_refuse_routing_and_openapi_describes_it(
        api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    response = await post(api, await make_key(), "/v1/qr-codes", {
        "kind": "static", "type": "text", "content": {"text": "hi"}, "rules": [RULE]})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "rules"
    document = (await api.get("/openapi.json")).json()
    assert {"rules", "split", "max_scans", "has_password"} <= set(document["components"]["schemas"]["QRCodePublic"]
                                                                  ["properties"])
    assert "password" not in document["components"]["schemas"]["QRGroupPublic"]["properties"]

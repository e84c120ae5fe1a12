"""What the issue's schemathesis run found, and versions: behaviour a client relies on."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema_rs
import pytest

from tests.conftest import KeyFactory, bearer

URL = {"destination": {"type": "url", "url": "https://example.com/menu"}}


@pytest.mark.parametrize(("path", "allowed"), [
    ("/v1/qr-codes/qr_123", "DELETE, GET, HEAD, PATCH"),
    ("/v1/qr-groups/grp_123", "DELETE, GET, HEAD, PATCH"),
    ("/v1/qr-codes", "GET, HEAD, POST"),
    ("/v1/domains/dom_123", "DELETE, GET, HEAD"),
    ("/v1/qr-codes/upsert", "POST"),  # not also a code id
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


async def test_null_clears_and_clearing_nothing_is_no_error(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    code = (await api.post("/v1/qr-codes", headers=bearer(key), json=URL)).json()
    patched = await api.patch(f"/v1/qr-codes/{code['id']}", headers=bearer(key), json={"content": None})
    assert patched.status_code == 200 and patched.json()["content"] is None
    static = (await api.post("/v1/qr-codes", headers=bearer(key),
                             json={"kind": "static", "type": "text", "content": {"text": "hi"}})).json()
    cleared = await api.patch(f"/v1/qr-codes/{static['id']}", headers=bearer(key), json={"group_id": None})
    assert cleared.status_code == 200
    refused = await api.patch(f"/v1/qr-codes/{static['id']}", headers=bearer(key), json={"status": "inactive"})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "status"


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
    for stale in ('"999"', "nonsense", ""):
        refused = await api.patch(path, headers={**bearer(key), "If-Match": stale}, json={"name": "x"})
        assert refused.status_code == 412 and refused.json()["type"].endswith("/version-mismatch")
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


STATIC = {"kind": "static"}
NEW_YEAR = 1767225600  # 2026-01-01T00:00:00Z as Unix seconds


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/qr-codes", {**URL, "valid_until": NEW_YEAR}, "valid_until"),
    ("/v1/qr-codes", {**URL, "valid_from": str(NEW_YEAR)}, "valid_from"),
    ("/v1/qr-groups", {"valid_until": "2026-12-31"}, "valid_until"),
    ("/v1/qr-groups", {"valid_from": "2026-12-31T23:00Z"}, "valid_from"),
    ("/v1/qr-groups", {"valid_from": "2026-12-31T23:00:00"}, "valid_from"),
    ("/v1/qr-codes", {**URL, "rules": [{"if": {"after": NEW_YEAR}, **URL}]}, "rules.0.if.after"),
    ("/v1/qr-codes", {**URL, "max_scans": "5"}, "max_scans"),
    ("/v1/qr-codes", {**URL, "max_scans": True}, "max_scans"),
    ("/v1/qr-codes", {**URL, "design": {"margin": "4"}}, "design.margin"),
    ("/v1/qr-codes", {**URL, "design": {"transparent_background": 1}}, "design.transparent_background"),
    ("/v1/qr-codes", {**STATIC, "type": "wifi", "content": {"ssid": "cafe", "password": "12345678", "hidden": "true"}},
     "content.hidden"),
    ("/v1/qr-codes", {**STATIC, "type": "event", "content": {"summary": "Launch", "start": NEW_YEAR}}, "content.start"),
    ("/v1/exports", {"format": "scans_csv", "since": NEW_YEAR}, "since"),
    ("/v1/exports", {"format": "zip", "tag": "fall24", "image_format": "png", "dpi": "300"}, "dpi"),
    ("/v1/exports", {"format": "pdf_sheet", "tag": "fall24", "sheet": {"crop_marks": 1}}, "sheet.crop_marks"),
])
async def test_a_json_value_of_another_type_is_refused_not_coerced(api: httpx.AsyncClient, make_key: KeyFactory,
                                                                   path: str, body: dict[str, object],
                                                                   field: str) -> None:
    response = await api.post(path, headers=bearer(await make_key()), json=body)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]], response.text


async def test_counts_and_analytics_ranges_are_not_coerced_either(api: httpx.AsyncClient,
                                                                  make_key: KeyFactory) -> None:
    key = await make_key()
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={"name": "run"})).json()
    minted = await api.post(f"/v1/qr-groups/{group['id']}/codes", headers=bearer(key), json={"count": "3"})
    assert minted.status_code == 422 and minted.json()["errors"][0]["field"] == "count"
    for since in (str(NEW_YEAR), "2026-01-01", "2026-01-01 00:00:00Z"):
        scans = await api.get(f"/v1/qr-groups/{group['id']}/scans", headers=bearer(key), params={"since": since})
        assert scans.status_code == 422 and scans.json()["errors"][0]["field"] == "since", since


async def test_rfc_3339_date_times_with_any_offset_are_taken(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    group = await api.post("/v1/qr-groups", headers=bearer(key), json={
        "valid_from": "2026-12-31t23:00:00.250+01:00", "valid_until": "2027-01-01T00:00:00z"})
    assert group.status_code == 201, group.text
    assert (group.json()["valid_from"], group.json()["valid_until"]) == ("2026-12-31T22:00:00Z", "2027-01-01T00:00:00Z")


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
async def test_a_date_time_whose_instant_is_outside_the_years_1_to_9999_is_a_422(
        api: httpx.AsyncClient, make_key: KeyFactory, moment: str) -> None:
    key = await make_key()
    code = (await api.post("/v1/qr-codes", headers=bearer(key), json=URL)).json()
    answers = [
        await api.post("/v1/qr-codes", headers=bearer(key), json={**URL, "valid_from": moment}),
        await api.patch(f"/v1/qr-codes/{code['id']}", headers=bearer(key), json={"valid_until": moment}),
        await api.post("/v1/qr-groups", headers=bearer(key), json={"valid_from": moment}),
        await api.post("/v1/qr-codes", headers=bearer(key), json={**URL, "rules": [
            {"if": {"after": moment}, "destination": {"type": "url", "url": "https://example.com/r"}}]}),
        await api.post("/v1/qr-codes", headers=bearer(key), json={
            "kind": "static", "type": "event", "content": {"summary": "x", "start": moment}}),
        await api.post("/v1/exports", headers=bearer(key), json={"format": "scans_csv", "since": moment}),
        await api.get(f"/v1/qr-codes/{code['id']}/scans", headers=bearer(key), params={"since": moment}),
    ]
    assert [answer.status_code for answer in answers] == [422] * len(answers), [a.text for a in answers]


@pytest.mark.parametrize("expires", ["9" * 5000, "²"])
async def test_an_export_file_with_an_unreadable_expiry_is_a_403(api: httpx.AsyncClient, expires: str) -> None:
    response = await api.get("/v1/exports/exp_nope/file", params={"expires": expires, "signature": "00"})
    assert response.status_code == 403, response.text


@pytest.mark.parametrize("query", ["", "?signature=", "?expires=&signature="])
async def test_an_export_file_without_a_key_or_a_signature_is_a_401(api: httpx.AsyncClient, query: str) -> None:
    response = await api.get(f"/v1/exports/exp_nope/file{query}")
    assert response.status_code == 401, response.text
    tampered = await api.get("/v1/exports/exp_nope/file?expires=4102444800&signature=00")
    assert tampered.status_code == 403


def body_validator(spec: dict[str, Any], name: str) -> jsonschema_rs.Validator:
    return jsonschema_rs.Draft202012Validator({"$ref": f"#/components/schemas/{name}", **spec})


@pytest.mark.parametrize("body", [
    {"format": "pdf_sheet"},
    {"format": "zip", "tag": "fall24"},
    {"format": "zip", "tag": "fall24", "image_format": None},
    {"format": "codes_csv", "group_id": "grp_1", "tag": "fall24"},
    {"format": "codes_csv", "code_ids": ["qr_1"], "folder_id": "fld_1"},
    {"format": "codes_csv", "sheet": {}},
    {"format": "pdf_sheet", "tag": "fall24", "sheet": {"template": "grid", "columns": 3, "rows": 7}},
    {"format": "pdf_sheet", "tag": "fall24", "sheet": {"template": "avery-5160", "paper": "a4"}},
    {"format": "pdf_sheet", "tag": "fall24", "sheet": {"paper": "letter"}},
])
async def test_what_the_export_schema_forbids_is_refused(api: httpx.AsyncClient, make_key: KeyFactory,
                                                          body: dict[str, Any]) -> None:
    assert not body_validator((await api.get("/openapi.json")).json(), "ExportCreate").is_valid(body)
    response = await api.post("/v1/exports", headers=bearer(await make_key()), json=body)
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(("body", "fields"), [
    ({"format": "codes_csv", "group_id": "grp_1", "tag": "fall24"}, ["group_id", "tag"]),
    ({"format": "codes_csv", "code_ids": ["qr_1"], "folder_id": "fld_1", "tag": "x"}, ["code_ids", "folder_id", "tag"]),
    ({"format": "zip", "image_format": "png"}, ["group_id", "code_ids", "folder_id", "tag"]),
    ({"format": "zip", "tag": "fall24"}, ["image_format"]),
    # The sheet's rules (docs/exports.md): the grid fields missing, the template and the paper it does not come
    # on (an absent template is avery-l7160, an A4 sheet), and a grid too small for its qr_size_mm.
    ({"format": "pdf_sheet", "tag": "fall24", "sheet": {"template": "grid", "columns": 3, "rows": 7}},
     ["sheet.qr_size_mm"]),
    ({"format": "pdf_sheet", "tag": "fall24", "sheet": {"template": "grid"}},
     ["sheet.columns", "sheet.rows", "sheet.qr_size_mm"]),
    ({"format": "pdf_sheet", "tag": "fall24", "sheet": {"template": "avery-5160", "paper": "a4"}},
     ["sheet.template", "sheet.paper"]),
    ({"format": "pdf_sheet", "tag": "fall24", "sheet": {"paper": "letter"}}, ["sheet.template", "sheet.paper"]),
    ({"format": "pdf_sheet", "tag": "fall24", "sheet": {"template": "grid", "columns": 20, "rows": 30,
                                                         "qr_size_mm": 50}}, ["sheet.qr_size_mm"]),
])
async def test_an_export_rule_between_fields_names_its_fields(api: httpx.AsyncClient, make_key: KeyFactory,
                                                              body: dict[str, Any], fields: list[str]) -> None:
    # docs/api.md, "Errors": a 422 names the fields at fault, never the body as a whole ("").
    response = await api.post("/v1/exports", headers=bearer(await make_key()), json=body)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == fields, response.text
    assert len({e["message"] for e in errors}) == 1, response.text


@pytest.mark.parametrize("body", [
    {"format": "codes_csv"},
    {"format": "scans_csv", "group_id": None, "since": "2026-01-01T00:00:00Z"},
    {"format": "zip", "tag": "fall24", "folder_id": None, "image_format": "svg"},
    {"format": "pdf_sheet", "tag": "fall24", "sheet": {"template": "avery-5160", "paper": "letter"}},
    {"format": "pdf_sheet", "tag": "fall24", "sheet": {"template": "grid", "columns": 3, "rows": 7, "qr_size_mm": 30}},
])
async def test_what_the_export_schema_allows_is_accepted(api: httpx.AsyncClient, make_key: KeyFactory,
                                                          body: dict[str, Any]) -> None:
    assert body_validator((await api.get("/openapi.json")).json(), "ExportCreate").is_valid(body)
    key = await make_key()
    # A label sheet or zip of no code is refused (docs/exports.md): the tag selects one.
    assert (await api.post("/v1/qr-codes", headers=bearer(key), json={"tags": ["fall24"]})).status_code == 201
    response = await api.post("/v1/exports", headers=bearer(key), json=body)
    assert response.status_code == 202, response.text


async def test_a_bulk_update_that_sets_nothing_is_refused_by_the_schema_too(api: httpx.AsyncClient,
                                                                          make_key: KeyFactory) -> None:
    validator = body_validator((await api.get("/openapi.json")).json(), "QRCodeBulkUpdate")
    assert not validator.is_valid({"ids": ["qr_1"], "set": {}})
    assert validator.is_valid({"ids": ["qr_1"], "set": {"tags": None}})
    response = await api.post("/v1/qr-codes/bulk-update", headers=bearer(await make_key()),
                              json={"ids": ["qr_1"], "set": {}})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "set"


@pytest.mark.parametrize("url", ["https://a..example/x", "https://" + "a" * 64 + ".example/x", "https://./",
                                 "http://[::1/x"])
async def test_an_outbound_url_with_a_malformed_host_is_a_422(api: httpx.AsyncClient, make_key: KeyFactory,
                                                               url: str) -> None:
    key = await make_key(scopes=("qr:read", "qr:write", "webhooks:read", "webhooks:write"))
    hook = await api.post("/v1/webhook-endpoints", headers=bearer(key), json={"url": url, "events": ["*"]})
    logo = await api.post("/v1/qr-codes", headers=bearer(key), json={**URL, "design": {"logo": {"url": url}}})
    assert (hook.status_code, logo.status_code) == (422, 422), (hook.text, logo.text)

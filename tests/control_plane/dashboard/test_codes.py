from __future__ import annotations

import re

import httpx

from tests.conftest import KeyFactory, bearer
from tests.control_plane.dashboard.conftest import SignedIn, create_through_form, post_form

CODE = {"name": "Table 1", "destination_url": "https://example.com/menu", "tags": "menu, fall",
        "url_params": "utm_medium=table", "properties": "", "status": "", "group_id": ""}


async def test_create_edit_pause_resume_and_delete_a_code(signed_in: SignedIn, make_key: KeyFactory,
                                                          api: httpx.AsyncClient):
    client = await signed_in()
    code_id = await create_through_form(client, "/app/codes", CODE, "qr")
    key = await make_key()
    code = (await api.get(f"/v1/qr-codes/{code_id}", headers=bearer(key))).json()
    assert code["tags"] == ["menu", "fall"] and code["resolved"]["url"] == "https://example.com/menu?utm_medium=table"
    page = f"/app/codes/{code_id}"
    detail = await client.get(page)
    assert code["image_url"] in detail.text and code["short_url"] in detail.text
    saved = await post_form(client, page, page, {**CODE, "destination_url": "https://example.com/b", "url_params": "",
                                                  "version": str(code["version"])})
    assert "Saved." in saved.text
    assert (await api.get(f"/v1/qr-codes/{code_id}", headers=bearer(key))).json()["resolved"]["url"] == \
        "https://example.com/b"
    await post_form(client, page, f"{page}/status", {"pause": "1"})
    assert (await api.get(f"/v1/qr-codes/{code_id}", headers=bearer(key))).json()["status"] == "inactive"
    assert "Resume</button>" in (await client.get(page)).text
    await post_form(client, page, f"{page}/status", {"pause": "0"})
    assert (await api.get(f"/v1/qr-codes/{code_id}", headers=bearer(key))).json()["status"] == "active"
    await post_form(client, page, f"{page}/delete", {"confirm": "yes"})
    assert (await api.get(f"/v1/qr-codes/{code_id}", headers=bearer(key))).status_code == 404


async def test_a_stale_form_does_not_overwrite_a_newer_change(signed_in: SignedIn, make_key: KeyFactory,
                                                              api: httpx.AsyncClient):
    client = await signed_in()
    code_id = await create_through_form(client, "/app/codes", CODE, "qr")
    key = await make_key()
    await api.patch(f"/v1/qr-codes/{code_id}", json={"name": "renamed by a script"}, headers=bearer(key))
    stale = await post_form(client, f"/app/codes/{code_id}", f"/app/codes/{code_id}", {**CODE, "version": "1"})
    assert stale.status_code == 412 and "Someone changed this code" in stale.text
    assert (await api.get(f"/v1/qr-codes/{code_id}", headers=bearer(key))).json()["name"] == "renamed by a script"


async def test_saving_a_form_without_changes_changes_nothing(signed_in: SignedIn, make_key: KeyFactory,
                                                             api: httpx.AsyncClient):
    """The same service as `PATCH` (docs/api.md §4.1): no new version, so another tab's form stays good."""
    client = await signed_in()
    code_id = await create_through_form(client, "/app/codes", CODE, "qr")
    page = f"/app/codes/{code_id}"
    unchanged = await post_form(client, page, page, {**CODE, "version": "1"})
    assert unchanged.status_code == 200 and "No changes to save." in unchanged.text
    assert "Saved." not in unchanged.text
    key = await make_key(scopes=("qr:read", "webhooks:read"))
    assert (await api.get(f"/v1/qr-codes/{code_id}", headers=bearer(key))).json()["version"] == 1
    other_tab = await post_form(client, page, page, {**CODE, "name": "Table 2", "version": "1"})
    assert other_tab.status_code == 200 and "Saved." in other_tab.text and "No changes" not in other_tab.text
    events = (await api.get("/v1/events", headers=bearer(key))).json()["data"]
    assert [e["type"] for e in events] == ["qr.updated", "qr.created"]


async def test_a_form_whose_version_is_no_number_is_refused_not_saved(signed_in: SignedIn, make_key: KeyFactory,
                                                                      api: httpx.AsyncClient):
    client = await signed_in()
    code_id = await create_through_form(client, "/app/codes", CODE, "qr")
    for version in ("\u00b2", "9" * 5000):  # `str.isdigit` takes "²"; int() refuses both
        damaged = await post_form(client, f"/app/codes/{code_id}", f"/app/codes/{code_id}",
                                  {**CODE, "name": "renamed", "version": version})
        assert damaged.status_code == 400 and "Reload the page" in damaged.text
    key = await make_key()
    assert (await api.get(f"/v1/qr-codes/{code_id}", headers=bearer(key))).json()["name"] == "Table 1"


async def test_the_list_searches_filters_and_sorts_as_the_api_does(signed_in: SignedIn, make_key: KeyFactory,
                                                                   api: httpx.AsyncClient):
    key = await make_key()
    for name, tag in (("Alpha poster", "poster"), ("Beta flyer", "flyer"), ("Gamma poster", "poster")):
        created = await api.post("/v1/qr-codes", json={"name": name, "tags": [tag], "destination": {
            "type": "url", "url": "https://example.com"}}, headers=bearer(key))
        assert created.status_code == 201
    client = await signed_in()
    names = re.compile(r'<a href="/app/codes/qr_\w+">([^<]+)</a>')
    assert names.findall((await client.get("/app/codes", params={"q": "poster", "sort": "name"})).text) == \
        ["Alpha poster", "Gamma poster"]
    assert names.findall((await client.get("/app/codes", params={"tag": "flyer"})).text) == ["Beta flyer"]
    assert names.findall((await client.get("/app/codes", params={"limit": "2", "sort": "name", "offset": "2"})).text) \
        == ["Gamma poster"]


async def test_code_validation_errors_come_from_the_api_and_sit_by_their_field(signed_in: SignedIn):
    client = await signed_in()
    too_many = await post_form(client, "/app/codes/new", "/app/codes",
                               {**CODE, "tags": ",".join(f"t{n}" for n in range(11))})
    assert too_many.status_code == 422 and 'id="f-tags-error">List should have at most 10 items' in too_many.text
    no_group = await post_form(client, "/app/codes/new", "/app/codes", {**CODE, "group_id": "grp_nope"})
    assert no_group.status_code == 422 and 'id="f-group_id-error">no such QR group' in no_group.text


async def test_bulk_select_pauses_and_tags_through_the_bulk_update(signed_in: SignedIn, make_key: KeyFactory,
                                                                   api: httpx.AsyncClient):
    key = await make_key()
    ids = [(await api.post("/v1/qr-codes", headers=bearer(key), json={"name": f"Card {n}"})).json()["id"]
           for n in range(3)]
    client = await signed_in()
    paused = await post_form(client, "/app/codes?sort=name", "/app/codes/bulk",
                             {"ids": ids[:2], "action": "pause", "back": "/app/codes?sort=name"})
    assert paused.status_code == 303 and paused.headers["location"] == "/app/codes?sort=name&updated=2"
    assert "Updated 2 codes." in (await client.get(paused.headers["location"])).text
    await post_form(client, "/app/codes", "/app/codes/bulk", {"ids": ids[1:], "action": "tags", "tags": "spring, a4"})
    codes = {c["id"]: c for c in (await api.get("/v1/qr-codes", headers=bearer(key))).json()["data"]}
    assert [codes[i]["status"] for i in ids] == ["inactive", "inactive", None]
    assert [codes[i]["tags"] for i in ids] == [[], ["spring", "a4"], ["spring", "a4"]]
    nothing = await post_form(client, "/app/codes", "/app/codes/bulk", {"action": "pause"})
    assert nothing.status_code == 422 and "Select at least one code" in nothing.text


async def test_bulk_move_to_a_folder_and_bulk_export_of_the_ticked_codes(signed_in: SignedIn, make_key: KeyFactory,
                                                                         api: httpx.AsyncClient):
    key = await make_key()
    folder = (await api.post("/v1/folders", headers=bearer(key), json={"name": "Posters"})).json()
    ids = [(await api.post("/v1/qr-codes", headers=bearer(key), json={
        "name": f"Card {n}", "destination": {"type": "url", "url": "https://example.com"}})).json()["id"]
        for n in range(3)]
    client = await signed_in(role="editor")
    listed = (await client.get("/app/codes")).text
    assert f'<option value="{folder["id"]}">Posters</option>' in listed
    assert 'id="select-all" aria-label="Select all codes on this page"' in listed
    moved = await post_form(client, "/app/codes", "/app/codes/bulk",
                            {"ids": ids[:2], "action": "folder", "folder_id": folder["id"]})
    assert moved.status_code == 303
    in_folder = (await api.get("/v1/qr-codes", params={"folder_id": folder["id"]}, headers=bearer(key))).json()
    assert sorted(c["id"] for c in in_folder["data"]) == sorted(ids[:2])
    await post_form(client, "/app/codes", "/app/codes/bulk", {"ids": ids[:1], "action": "folder", "folder_id": ""})
    assert (await api.get(f"/v1/qr-codes/{ids[0]}", headers=bearer(key))).json()["folder_id"] is None

    exported = await post_form(client, "/app/codes", "/app/codes/bulk", {"ids": ids[1:], "action": "export-csv"})
    assert exported.status_code == 303
    found = re.fullmatch(r"/app/exports\?started=(exp_\w+)", exported.headers["location"])
    assert found
    job = (await api.get(f"/v1/exports/{found.group(1)}", headers=bearer(key))).json()
    assert job["format"] == "codes_csv" and job["progress"]["total"] == 2
    progress = (await client.get(exported.headers["location"])).text
    assert f"Export {found.group(1)} is queued" in progress


async def test_a_viewer_has_no_bulk_controls(signed_in: SignedIn, make_key: KeyFactory, api: httpx.AsyncClient):
    key = await make_key()
    code = (await api.post("/v1/qr-codes", headers=bearer(key), json={"name": "Card"})).json()
    client = await signed_in("viewer@example.com", "viewer")
    listed = (await client.get("/app/codes")).text
    assert 'id="bulk"' not in listed and 'name="ids"' not in listed and "select-all" not in listed
    refused = await post_form(client, "/app/codes", "/app/codes/bulk", {"ids": [code["id"]], "action": "pause"})
    assert refused.status_code == 403
    assert (await api.get(f"/v1/qr-codes/{code['id']}", headers=bearer(key))).json()["status"] is None
    new = await client.get("/app/codes/new")  # a bookmark, a shared link: no form to fill in only to be refused
    assert new.status_code == 403 and 'action="/app/codes"' not in new.text


def _select(html: str, select_id: str) -> str:
    found = re.search(rf'<select id="{select_id}" name="\w+".*?</select>', html, re.S)
    assert found, f"no select {select_id}"
    return found.group(0)


async def test_a_code_of_an_old_group_keeps_its_group_and_every_picker_offers_it(signed_in: SignedIn,
                                                                                 make_key: KeyFactory,
                                                                                 api: httpx.AsyncClient):
    """Past 100 groups the pickers offered only the newest 100: the code's own group had no option, the browser
    sent "none (standalone)", and a save that only renamed the code took it out of its group."""
    key = await make_key()
    old = (await api.post("/v1/qr-groups", json={"name": "Old campaign", "destination": {
        "type": "url", "url": "https://example.com/old"}}, headers=bearer(key))).json()
    for n in range(100):
        assert (await api.post("/v1/qr-groups", json={"name": f"g{n}"}, headers=bearer(key))).status_code == 201
    folder = (await api.post("/v1/folders", json={"name": "Posters"}, headers=bearer(key))).json()
    for n in range(100):
        assert (await api.post("/v1/folders", json={"name": f"f{n}"}, headers=bearer(key))).status_code == 201
    code = (await api.post("/v1/qr-codes", json={"name": "Table 1", "group_id": old["id"]},
                           headers=bearer(key))).json()
    client = await signed_in()
    page = f"/app/codes/{code['id']}"
    picker = _select((await client.get(page)).text, "f-group_id")
    assert f'<option value="{old["id"]}" selected>Old campaign</option>' in picker
    await post_form(client, page, page, {**CODE, "name": "Table 1 renamed", "destination_url": "",
                                         "group_id": old["id"], "version": str(code["version"])})
    after = (await api.get(f"/v1/qr-codes/{code['id']}", headers=bearer(key))).json()
    assert after["name"] == "Table 1 renamed" and after["group_id"] == old["id"]

    listed = (await client.get("/app/codes", params={"group_id": old["id"]})).text
    assert f'<option value="{old["id"]}" selected>Old campaign</option>' in _select(listed, "group_id")
    assert f'<option value="{old["id"]}">Old campaign</option>' in _select(listed, "bulk-group")
    assert f'<option value="{folder["id"]}">Posters</option>' in _select(listed, "bulk-folder")
    printing = (await client.get("/app/exports", params={"group_id": old["id"]})).text
    assert f'<option value="{old["id"]}" selected>Old campaign (1 codes)</option>' in _select(printing, "f-group_id")

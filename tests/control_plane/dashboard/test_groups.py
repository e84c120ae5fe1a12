from __future__ import annotations

import re

import httpx

from tests.conftest import KeyFactory, bearer
from tests.control_plane.dashboard.conftest import SignedIn, create_through_form, post_form

GROUP = {"name": "Fall menus", "description": "", "status": "active", "destination_url": "https://example.com/menu",
         "url_params": "utm_campaign=fall24\nutm_source=print", "properties": "store=12"}


async def test_a_group_made_in_the_dashboard_is_the_apis_group(signed_in: SignedIn, make_key: KeyFactory,
                                                               api: httpx.AsyncClient):
    client = await signed_in()
    group_id = await create_through_form(client, "/app/groups", GROUP, "grp")
    key = await make_key(scopes=("qr:read", "webhooks:read"))
    group = (await api.get(f"/v1/qr-groups/{group_id}", headers=bearer(key))).json()
    assert group["url_params"] == {"utm_campaign": "fall24", "utm_source": "print"}
    assert group["properties"] == {"store": "12"} and group["destination"]["url"] == "https://example.com/menu"
    events = (await api.get("/v1/events", headers=bearer(key))).json()["data"]
    assert [e["type"] for e in events] == ["qr_group.created"]


async def test_minting_and_editing_a_group(signed_in: SignedIn, make_key: KeyFactory, api: httpx.AsyncClient):
    client = await signed_in()
    group_id = await create_through_form(client, "/app/groups", GROUP, "grp")
    page = f"/app/groups/{group_id}"
    minted = await post_form(client, page, f"{page}/mint", {"count": "20", "name_prefix": "table-"})
    assert "Minted 20 codes." in minted.text
    edited = await post_form(client, page, page, {**GROUP, "destination_url": "https://example.com/winter",
                                                  "url_params": "utm_campaign=winter"})
    assert "Saved." in edited.text
    key = await make_key()
    codes = (await api.get("/v1/qr-codes", params={"group_id": group_id, "limit": 100}, headers=bearer(key))).json()
    assert codes["total"] == 20
    assert {c["resolved"]["url"] for c in codes["data"]} == {"https://example.com/winter?utm_campaign=winter"}
    listing = await client.get("/app/groups")
    row = re.search(rf'href="/app/groups/{group_id}">Fall menus</a>.*?</tr>', listing.text, re.S)
    assert row and '<td class="num">20</td>' in row.group(0)


async def test_saving_a_group_form_without_changes_changes_nothing(signed_in: SignedIn, make_key: KeyFactory,
                                                                   api: httpx.AsyncClient):
    client = await signed_in()
    group_id = await create_through_form(client, "/app/groups", GROUP, "grp")
    page = f"/app/groups/{group_id}"
    unchanged = await post_form(client, page, page, {**GROUP, "version": "1"})
    assert unchanged.status_code == 200 and "No changes to save." in unchanged.text
    assert "Saved." not in unchanged.text
    key = await make_key(scopes=("qr:read", "webhooks:read"))
    assert (await api.get(f"/v1/qr-groups/{group_id}", headers=bearer(key))).json()["version"] == 1
    events = (await api.get("/v1/events", headers=bearer(key))).json()["data"]
    assert [e["type"] for e in events] == ["qr_group.created"]
    renamed = await post_form(client, page, page, {**GROUP, "name": "Winter menus", "version": "1"})
    assert renamed.status_code == 200 and "Saved." in renamed.text and "No changes" not in renamed.text


async def test_errors_are_shown_next_to_their_field(signed_in: SignedIn):
    client = await signed_in()
    bad = await post_form(client, "/app/groups/new", "/app/groups",
                          {**GROUP, "destination_url": "ftp://example.com", "url_params": "no equals sign"})
    assert bad.status_code == 422
    assert 'id="f-url_params-error">line 1 is not key=value' in bad.text
    bad_url = await post_form(client, "/app/groups/new", "/app/groups", {**GROUP, "destination_url": "ftp://x.example"})
    assert bad_url.status_code == 422 and "Destination URL:" in bad_url.text
    assert (await client.get("/app/groups")).text.count("<tr>") == 2  # header and "No groups."


async def test_a_viewer_reads_groups_but_cannot_change_them(signed_in: SignedIn):
    owner = await signed_in()
    viewer = await signed_in("vic@example.com", "viewer")
    group_id = await create_through_form(owner, "/app/groups", GROUP, "grp")
    page = await viewer.get(f"/app/groups/{group_id}")
    assert page.status_code == 200 and "utm_campaign=fall24" in page.text
    assert "<button" not in page.text.split("</header>")[1]
    assert "New group" not in (await viewer.get("/app/groups")).text
    new = await viewer.get("/app/groups/new")  # a bookmark, a shared link: no form to fill in only to be refused
    assert new.status_code == 403 and 'action="/app/groups"' not in new.text
    refused = await post_form(viewer, f"/app/groups/{group_id}", f"/app/groups/{group_id}/delete", {"confirm": "yes"})
    assert refused.status_code == 403
    assert (await owner.get(f"/app/groups/{group_id}")).status_code == 200


async def test_deleting_a_group_warns_and_detaches_its_codes(signed_in: SignedIn, make_key: KeyFactory,
                                                             api: httpx.AsyncClient):
    client = await signed_in()
    group_id = await create_through_form(client, "/app/groups", GROUP, "grp")
    page = f"/app/groups/{group_id}"
    await post_form(client, page, f"{page}/mint", {"count": "3"})
    assert "Its 3 codes are not deleted: they detach." in (await client.get(page)).text
    deleted = await post_form(client, page, f"{page}/delete", {"confirm": "yes"})
    assert deleted.status_code == 303
    assert (await client.get(page)).status_code == 404
    codes = (await api.get("/v1/qr-codes", headers=bearer(await make_key()))).json()
    assert codes["total"] == 3 and {c["group_id"] for c in codes["data"]} == {None}


async def test_test_mode_shows_only_test_groups(signed_in: SignedIn):
    client = await signed_in()
    await post_form(client, "/app/groups/new", "/app/groups", GROUP)
    await post_form(client, "/app/", "/app/mode", {"mode": "test"})
    assert "Fall menus" not in (await client.get("/app/groups")).text


async def test_a_group_without_a_status_says_so_instead_of_none(signed_in: SignedIn, make_key: KeyFactory,
                                                                api: httpx.AsyncClient):
    key = await make_key()
    created = await api.post("/v1/qr-groups", headers=bearer(key), json={"name": "No status"})
    assert created.status_code == 201, created.text
    client = await signed_in()
    detail = (await client.get(f"/app/groups/{created.json()['id']}")).text
    assert "<dd>None</dd>" not in detail and "not set: a code&#39;s own, else active" in detail
    assert "<td>None</td>" not in (await client.get("/app/groups")).text


async def test_a_stale_group_form_does_not_overwrite_a_newer_change(signed_in: SignedIn, make_key: KeyFactory,
                                                                    api: httpx.AsyncClient):
    client = await signed_in()
    group_id = await create_through_form(client, "/app/groups", GROUP, "grp")
    key = await make_key()
    await api.patch(f"/v1/qr-groups/{group_id}", json={"name": "renamed by a script"}, headers=bearer(key))
    page = f"/app/groups/{group_id}"
    stale = await post_form(client, page, page, {**GROUP, "version": "1"})
    assert stale.status_code == 412 and "Someone changed this group" in stale.text
    assert (await api.get(f"/v1/qr-groups/{group_id}", headers=bearer(key))).json()["name"] == "renamed by a script"
    current = await post_form(client, page, page, {**GROUP, "version": "2"})  # the form as reloaded
    assert current.status_code == 200 and "Saved." in current.text

"""A URL stored by an earlier release is judged only when it is written again (docs/api.md §2.1). The edit
forms send the stored destination URL back with every save: renaming a code or a group whose URL no write would
take now must not be refused on the URL the user never touched."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import httpx

from tests.conftest import KeyFactory, bearer
from tests.control_plane.dashboard.conftest import SignedIn, create_through_form, post_form

OLD_URL = "https://xn--zz.example/menu"  # an ASCII host earlier releases stored as given; no punycode of anything
CODE = {"name": "Table 1", "destination_url": "https://example.com/menu", "tags": "", "url_params": "",
        "properties": "", "status": "", "group_id": ""}


def errors(page: httpx.Response) -> tuple[int, list[str]]:
    return page.status_code, re.findall(r'class="error"[^>]*>(.*?)</', page.text, re.S)


async def test_renaming_a_code_whose_stored_url_predates_the_host_checks_in_the_dashboard(
        signed_in: SignedIn, make_key: KeyFactory, api: httpx.AsyncClient, db: asyncpg.Connection[Any]) -> None:
    client = await signed_in()
    code_id = await create_through_form(client, "/app/codes", CODE, "qr")
    await db.execute("UPDATE qr_codes SET destination_url = $2 WHERE id = $1", code_id, OLD_URL)
    page = f"/app/codes/{code_id}"
    detail = await client.get(page)
    assert detail.status_code == 200 and OLD_URL in detail.text  # the form shows the stored URL as is
    # The user changes only the name; the browser sends the form's other fields as they were.
    saved = await post_form(client, page, page, {**CODE, "name": "Table 2", "destination_url": OLD_URL,
                                                 "version": "1"})
    assert saved.status_code == 200 and "Saved." in saved.text, errors(saved)
    key = await make_key()
    after = (await api.get(f"/v1/qr-codes/{code_id}", headers=bearer(key))).json()
    assert after["name"] == "Table 2" and after["destination"]["url"] == OLD_URL


GROUP = {"name": "Fall menus", "description": "", "status": "active", "destination_url": "https://example.com/menu",
         "url_params": "", "properties": ""}


async def test_renaming_a_group_whose_stored_url_predates_the_host_checks_in_the_dashboard(
        signed_in: SignedIn, make_key: KeyFactory, api: httpx.AsyncClient, db: asyncpg.Connection[Any]) -> None:
    client = await signed_in()
    group_id = await create_through_form(client, "/app/groups", GROUP, "grp")
    await db.execute("UPDATE qr_groups SET destination_url = $2 WHERE id = $1", group_id, OLD_URL)
    page = f"/app/groups/{group_id}"
    assert OLD_URL in (await client.get(page)).text
    saved = await post_form(client, page, page, {**GROUP, "name": "Winter menus", "destination_url": OLD_URL,
                                                 "version": "1"})
    assert saved.status_code == 200 and "Saved." in saved.text, errors(saved)
    key = await make_key()
    after = (await api.get(f"/v1/qr-groups/{group_id}", headers=bearer(key))).json()
    assert after["name"] == "Winter menus" and after["destination"]["url"] == OLD_URL

"""A URL stored by an earlier release is judged only when it is written again (docs/api.md §2.1). The edit
forms send the stored destination URL back with every save: renaming a code or a group whose URL no write would
take now must not be refused on the URL the user never touched."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import KeyFactory, bearer
from tests.control_plane.dashboard.conftest import SignedIn, create_through_form, post_form

OLD_URL = "https://xn--zz.example/menu"  # an ASCII host earlier releases stored as given; no punycode of anything
CODE = {"name": "Table 1", "destination_url": "https://example.com/menu", "tags": "", "url_params": "",
        "properties": "", "status": "", "group_id": ""}
GROUP = {"name": "Fall menus", "description": "", "status": "active", "destination_url": "https://example.com/menu",
         "url_params": "", "properties": ""}
KINDS = {  # kind → (dashboard page, form, id prefix, table)
    "code": ("/app/codes", CODE, "qr", "qr_codes"),
    "group": ("/app/groups", GROUP, "grp", "qr_groups"),
}


@pytest.mark.parametrize("kind", list(KINDS))
async def test_renaming_what_has_a_url_stored_before_the_host_checks_in_the_dashboard(
        signed_in: SignedIn, make_key: KeyFactory, api: httpx.AsyncClient, db: asyncpg.Connection[Any],
        kind: str) -> None:
    pages, form, prefix, table = KINDS[kind]
    client = await signed_in()
    object_id = await create_through_form(client, pages, form, prefix)
    await db.execute(f"UPDATE {table} SET destination_url = $2 WHERE id = $1", object_id, OLD_URL)
    page = f"{pages}/{object_id}"
    assert OLD_URL in (await client.get(page)).text  # the form shows the stored URL as is
    # The user changes only the name; the browser sends the form's other fields as they were.
    saved = await post_form(client, page, page, {**form, "name": "Renamed", "destination_url": OLD_URL,
                                                 "version": "1"})
    assert saved.status_code == 200 and "Saved." in saved.text, \
        (saved.status_code, re.findall(r'class="error"[^>]*>(.*?)</', saved.text, re.S))
    after = (await api.get(f"/v1/qr-{kind}s/{object_id}", headers=bearer(await make_key()))).json()
    assert after["name"] == "Renamed" and after["destination"]["url"] == OLD_URL

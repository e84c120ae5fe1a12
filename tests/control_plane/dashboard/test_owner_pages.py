"""API keys, webhooks and usage: the owner's pages, through the same services as the API."""

from __future__ import annotations

import re

import httpx

from tests.conftest import KeyFactory, bearer
from tests.control_plane.dashboard.conftest import SignedIn, UserFactory, post_form

PUBLIC_URL = "https://93.184.215.14/hooks/scanroute"  # a public address literal: no DNS needed


async def test_an_owner_creates_a_key_shown_once_that_works_then_revokes_it(signed_in: SignedIn,
                                                                            api: httpx.AsyncClient):
    client = await signed_in()
    created = await post_form(client, "/app/api-keys", "/app/api-keys", {"name": "print shop", "scopes": ["qr:read"]})
    secret = re.search(r'id="new-secret" type="text" readonly value="(qr_live_\w+)"', created.text)
    assert created.status_code == 200 and secret
    assert (await api.get("/v1/qr-codes", headers=bearer(secret.group(1)))).status_code == 200
    assert (await api.post("/v1/qr-codes", json={}, headers=bearer(secret.group(1)))).status_code == 403
    listing = await client.get("/app/api-keys")
    assert secret.group(1) not in listing.text and "print shop" in listing.text
    key_id = re.search(r'action="/app/api-keys/(key_\w+)/revoke"', listing.text).group(1)
    await post_form(client, "/app/api-keys", f"/app/api-keys/{key_id}/revoke", {})
    assert (await api.get("/v1/qr-codes", headers=bearer(secret.group(1)))).status_code == 401


async def test_the_keys_page_has_pages_and_a_key_past_the_first_100_can_be_revoked(signed_in: SignedIn,
                                                                                   make_key: KeyFactory,
                                                                                   api: httpx.AsyncClient):
    oldest = await make_key(scopes=("qr:read",))
    for _ in range(104):
        await make_key(scopes=("qr:read",))
    client = await signed_in()
    first = await client.get("/app/api-keys")
    assert len(re.findall(r'action="/app/api-keys/key_\w+/revoke"', first.text)) == 100
    assert "1–100 of 105 keys" in first.text
    following = re.search(r'<a href="([^"]+)" rel="next">', first.text)
    assert following
    second_page = following.group(1).replace("&amp;", "&")
    second = await client.get(second_page)
    assert "101–105 of 105 keys" in second.text and 'name="offset" value="100"' in second.text
    row = re.search(rf'{oldest[-4:]}</code>.*?action="/app/api-keys/(key_\w+)/revoke"', second.text, re.S)
    assert row
    revoked = await post_form(client, second_page, f"/app/api-keys/{row.group(1)}/revoke", {"offset": "100"})
    assert revoked.headers["location"] == "/app/api-keys?offset=100"
    assert (await api.get("/v1/qr-codes", headers=bearer(oldest))).status_code == 401


async def test_keys_and_webhook_changes_are_for_owners_only(make_user: UserFactory, signed_in: SignedIn):
    await make_user()
    editor = await signed_in("ed@example.com", "editor")
    overview = await editor.get("/app/")
    assert 'href="/app/api-keys"' not in overview.text and 'href="/app/webhooks"' in overview.text
    assert (await editor.get("/app/api-keys")).status_code == 403
    hooks = await editor.get("/app/webhooks")
    assert hooks.status_code == 200 and "New endpoint" not in hooks.text
    refused = await post_form(editor, "/app/webhooks", "/app/webhooks", {"url": PUBLIC_URL, "events": "*"})
    assert refused.status_code == 403


async def test_an_owner_adds_an_endpoint_sends_a_test_and_sees_the_delivery(signed_in: SignedIn):
    client = await signed_in()
    created = await post_form(client, "/app/webhooks", "/app/webhooks",
                              {"url": PUBLIC_URL, "events": "*", "description": "CRM"})
    assert created.status_code == 200 and re.search(r'id="endpoint-secret" type="text" readonly value="whsec_',
                                                    created.text)
    endpoint_id = re.search(r'action="/app/webhooks/(we_\w+)"', created.text).group(1)
    page = f"/app/webhooks/{endpoint_id}"
    tested = await post_form(client, page, page, {"action": "test"})
    assert "A test event is queued" in tested.text and "webhook_endpoint.test" in tested.text
    assert "whsec_" not in (await client.get(page)).text
    rotated = await post_form(client, page, page, {"action": "rotate"})
    assert 'id="endpoint-secret"' in rotated.text
    disabled = await post_form(client, page, page, {"action": "disable"})
    assert "Endpoint disabled." in disabled.text
    refused = await post_form(client, page, page, {"action": "test"})
    assert refused.status_code == 409 and "enable it before sending a test event" in refused.text
    http = await post_form(client, "/app/webhooks", "/app/webhooks", {"url": "http://example.com/x", "events": "*"})
    assert http.status_code == 422 and 'id="f-url-error"' in http.text


async def test_usage_counts_codes_created_in_the_dashboard(signed_in: SignedIn):
    client = await signed_in()
    group = await post_form(client, "/app/groups/new", "/app/groups", {"name": "run"})
    await post_form(client, group.headers["location"], group.headers["location"].split("?")[0] + "/mint",
                    {"count": "7"})
    assert re.search(r'id="generated">7<', (await client.get("/app/usage")).text)

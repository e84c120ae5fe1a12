"""The rules and split editor on a group's and a code's page: the API's lists, the API's messages."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from html import unescape
from typing import Any

import httpx
import pytest

from tests.conftest import KeyFactory, bearer
from tests.control_plane.dashboard.conftest import SignedIn, csrf_of

IOS = {"device": ["ios"], "destination_url": "https://apps.apple.com/app/id1"}


async def _submit(client: httpx.AsyncClient, page: str, action: str, data: dict[str, Any]) -> httpx.Response:
    """Post a form of the page as a browser would: its CSRF token and the version the page was opened at."""
    html = (await client.get(page)).text
    version = re.search(r'name="version" value="(\d+)"', html)
    assert version, "the page has no rules form"
    return await client.post(action, data={"version": version.group(1), **data, "csrf_token": csrf_of(html)})


async def _group(api: httpx.AsyncClient, key: str) -> dict[str, Any]:
    created = await api.post("/v1/qr-groups", headers=bearer(key), json={
        "name": "Menus", "destination": {"type": "url", "url": "https://example.com/menu"}})
    assert created.status_code == 201
    group: dict[str, Any] = created.json()
    return group


GroupPage = Callable[..., Awaitable[tuple[str, dict[str, Any], httpx.AsyncClient, str]]]


@pytest.fixture
def on_group_page(signed_in: SignedIn, make_key: KeyFactory, api: httpx.AsyncClient) -> GroupPage:
    """A key, a group made with it, and a browser signed in as a user of `role`: (key, group, browser, page)."""

    async def make(email: str = "ana@example.com", role: str = "owner",
                   scopes: tuple[str, ...] = ("qr:read", "qr:write"),
                   ) -> tuple[str, dict[str, Any], httpx.AsyncClient, str]:
        key = await make_key(scopes=scopes)
        group = await _group(api, key)
        return key, group, await signed_in(email, role), f"/app/groups/{group['id']}"

    return make


async def test_rules_added_edited_moved_and_deleted_are_the_apis_rules(on_group_page: GroupPage,
                                                                       api: httpx.AsyncClient):
    key, group, client, page = await on_group_page(role="editor", scopes=("qr:read", "qr:write", "webhooks:read"))

    async def rules() -> list[dict[str, Any]]:
        return (await api.get(f"/v1/qr-groups/{group['id']}", headers=bearer(key))).json()["rules"] or []

    added = await _submit(client, page, f"{page}/rules", IOS)
    assert added.status_code == 303 and added.headers["location"] == f"{page}?done=rule-added#rules"
    assert "Rule added." in (await client.get(added.headers["location"])).text
    await _submit(client, page, f"{page}/rules", {"country": "de, at", "weekday": ["mon", "fri"],
                                                   "time_from": "11:30", "time_to": "14:30",
                                                   "timezone": "Europe/Berlin", "query": "src=flyer\nref",
                                                   "destination_url": "https://example.com/de"})
    assert await rules() == [
        {"if": {"device": ["ios"]}, "destination": {"type": "url", "url": "https://apps.apple.com/app/id1"}},
        {"if": {"country": ["DE", "AT"], "query": {"src": "flyer", "ref": None}, "weekday": ["mon", "fri"],
                "time": {"from": "11:30", "to": "14:30"}, "timezone": "Europe/Berlin"},
         "destination": {"type": "url", "url": "https://example.com/de"}}]
    listed = (await client.get(page)).text
    assert "Rule 2:</strong> if country is DE or AT" in listed

    await _submit(client, page, f"{page}/rules/2/move", {"to": "up"})
    assert [r["destination"]["url"] for r in await rules()] == ["https://example.com/de",
                                                                 "https://apps.apple.com/app/id1"]
    await _submit(client, page, f"{page}/rules/2", {"device": ["ios", "android"], "language": "EN",
                                                    "destination_url": "https://example.com/app"})
    assert (await rules())[1] == {"if": {"device": ["ios", "android"], "language": ["en"]},
                                  "destination": {"type": "url", "url": "https://example.com/app"}}
    await _submit(client, page, f"{page}/rules/1/delete", {})
    assert [r["destination"]["url"] for r in await rules()] == ["https://example.com/app"]
    events = (await api.get("/v1/events", params={"type": "qr_group.updated"}, headers=bearer(key))).json()
    assert len(events["data"]) == 5  # one per change, as through the API


async def test_rule_errors_are_the_apis_messages_next_to_their_field(on_group_page: GroupPage, api: httpx.AsyncClient):
    key, group, client, page = await on_group_page()
    refused = await api.patch(f"/v1/qr-groups/{group['id']}", headers=bearer(key), json={"rules": [
        {"if": {"country": ["DEU"], "time": {"from": "25:00", "to": "10:00"}},
         "destination": {"type": "url", "url": "https://example.com"}}]})
    messages = {e["field"]: e["message"] for e in refused.json()["errors"]}

    bad = await _submit(client, page, f"{page}/rules", {"country": "DE, DEU", "time_from": "25:00",
                                                         "time_to": "10:00", "destination_url": "https://example.com"})
    assert bad.status_code == 422
    shown = unescape(bad.text)
    assert f'id="rule-new-country-error">“DEU” {messages["rules.0.if.country.0"]}</p>' in shown
    assert f'id="rule-new-time_from-error">{messages["rules.0.if.time.from"]}</p>' in shown
    assert 'aria-describedby="rule-new-country-hint rule-new-country-error" aria-invalid="true"' in bad.text
    assert 'value="DE, DEU"' in bad.text  # what was typed is kept
    empty = await _submit(client, page, f"{page}/rules", {"destination_url": "https://example.com"})
    assert empty.status_code == 422 and "a rule needs at least one condition" in empty.text
    no_url = await _submit(client, page, f"{page}/rules", {"device": ["android"]})
    assert no_url.status_code == 422 and 'id="rule-new-destination_url-error">is required when type is' in no_url.text
    assert (await api.get(f"/v1/qr-groups/{group['id']}", headers=bearer(key))).json()["rules"] is None


async def test_the_split_is_saved_checked_and_removed(on_group_page: GroupPage, api: httpx.AsyncClient):
    key, group, client, page = await on_group_page()
    saved = await _submit(client, page, f"{page}/split", {"weight_0": "1", "url_0": "https://example.com/a",
                                                          "weight_1": "3", "url_1": "https://example.com/b"})
    assert saved.status_code == 303
    split = (await api.get(f"/v1/qr-groups/{group['id']}", headers=bearer(key))).json()["split"]
    assert split == [{"weight": 1, "destination": {"type": "url", "url": "https://example.com/a"}},
                     {"weight": 3, "destination": {"type": "url", "url": "https://example.com/b"}}]
    html = (await client.get(page)).text
    assert 'id="split-weight-1" name="weight_1" type="number" min="1" max="100" size="4" value="3"' in html
    one = await _submit(client, page, f"{page}/split", {"weight_0": "100", "url_0": "https://example.com/a",
                                                        "weight_1": "", "url_1": ""})
    assert one.status_code == 422 and "List should have at least 2 items" in one.text
    heavy = await _submit(client, page, f"{page}/split", {"weight_0": "1", "url_0": "https://example.com/a",
                                                          "weight_1": "", "url_1": "", "weight_2": "101",
                                                          "url_2": "https://example.com/c"})
    assert heavy.status_code == 422
    assert 'id="split-weight-2-error">Input should be less than or equal to 100</p>' in heavy.text
    removed = await _submit(client, page, f"{page}/split", {"remove": "1"})
    assert removed.status_code == 303
    assert (await api.get(f"/v1/qr-groups/{group['id']}", headers=bearer(key))).json()["split"] is None


async def test_a_stale_page_does_not_overwrite_rules_changed_meanwhile(on_group_page: GroupPage,
                                                                       api: httpx.AsyncClient):
    key, group, client, page = await on_group_page()
    html = (await client.get(page)).text
    await api.patch(f"/v1/qr-groups/{group['id']}", headers=bearer(key), json={"rules": [
        {"if": {"device": ["android"]}, "destination": {"type": "url", "url": "https://example.com/android"}}]})
    stale = await client.post(f"{page}/rules", data={**IOS, "version": str(group["version"]),
                                                     "csrf_token": csrf_of(html)})
    assert stale.status_code == 412 and "Someone changed this group since you opened the page" in stale.text
    rules = (await api.get(f"/v1/qr-groups/{group['id']}", headers=bearer(key))).json()["rules"]
    assert [r["if"] for r in rules] == [{"device": ["android"]}]


async def test_numbers_that_are_no_numbers_are_refused_with_a_message(on_group_page: GroupPage, api: httpx.AsyncClient):
    key, group, client, page = await on_group_page()
    for number in ("\u00b2", "9" * 5000):  # `str.isdigit` takes "²"; int() refuses both
        damaged = await _submit(client, page, f"{page}/rules", {**IOS, "version": number})
        assert damaged.status_code == 400 and "Reload the page" in damaged.text
        weight = await _submit(client, page, f"{page}/split", {"weight_0": number, "url_0": "https://example.com/a",
                                                               "weight_1": "1", "url_1": "https://example.com/b"})
        assert weight.status_code == 422 and 'id="split-weight-0-error">' in weight.text
    after = (await api.get(f"/v1/qr-groups/{group['id']}", headers=bearer(key))).json()
    assert after["rules"] is None and after["split"] is None


async def test_a_rule_number_that_is_no_rule_is_a_404_page_not_a_500(on_group_page: GroupPage, api: httpx.AsyncClient):
    """A rule's number is in the address: one of thousands of digits (int() refuses over 4,300) is no rule."""
    key, group, client, page = await on_group_page()
    assert (await _submit(client, page, f"{page}/rules", IOS)).status_code == 303
    for number in ("9" * 5000, "0", "2", "\u00b2"):
        for action in ("", "/move", "/delete"):
            answer = await _submit(client, page, f"{page}/rules/{number}{action}", {**IOS, "direction": "up"})
            assert answer.status_code == 404 and "No such rule" in answer.text, (number, action, answer.status_code)
    after = (await api.get(f"/v1/qr-groups/{group['id']}", headers=bearer(key))).json()
    assert len(after["rules"]) == 1


async def test_a_codes_own_rules_come_first_and_reach_resolved(on_group_page: GroupPage, api: httpx.AsyncClient):
    key, group, client, _ = await on_group_page()
    await api.patch(f"/v1/qr-groups/{group['id']}", headers=bearer(key), json={"rules": [
        {"if": {"device": ["android"]}, "destination": {"type": "url", "url": "https://example.com/android"}}]})
    code = (await api.post("/v1/qr-codes", headers=bearer(key), json={"group_id": group["id"]})).json()
    page = f"/app/codes/{code['id']}"
    assert "The group&#39;s rules and split come after these" in (await client.get(page)).text
    assert (await _submit(client, page, f"{page}/rules", IOS)).status_code == 303
    resolved = (await api.get(f"/v1/qr-codes/{code['id']}", headers=bearer(key))).json()["resolved"]
    assert [(r["source"], r["if"]) for r in resolved["rules"]] == [("code", {"device": ["ios"]}),
                                                                   ("group", {"device": ["android"]})]
    static = (await api.post("/v1/qr-codes", headers=bearer(key), json={
        "kind": "static", "type": "text", "content": {"text": "hello"}})).json()
    assert 'id="rules"' not in (await client.get(f"/app/codes/{static['id']}")).text


async def test_a_viewer_reads_the_rules_without_any_form_and_is_refused(on_group_page: GroupPage,
                                                                        api: httpx.AsyncClient):
    key, group, client, page = await on_group_page("viewer@example.com", "viewer")
    await api.patch(f"/v1/qr-groups/{group['id']}", headers=bearer(key), json={
        "rules": [{"if": {"device": ["ios"]}, "destination": {"type": "url", "url": "https://example.com/ios"}}],
        "split": [{"weight": 1, "destination": {"type": "url", "url": "https://example.com/a"}},
                  {"weight": 1, "destination": {"type": "url", "url": "https://example.com/b"}}]})
    html = (await client.get(page)).text
    assert "Rule 1:</strong> if device is ios" in html and "https://example.com/b" in html
    assert "<form" not in html.split('id="rules"')[1]  # no write control anywhere below the settings
    for action in (f"{page}/rules", f"{page}/rules/1/delete", f"{page}/split"):
        refused = await client.post(action, data={**IOS, "remove": "1", "csrf_token": csrf_of(html)})
        assert refused.status_code == 403
    assert len((await api.get(f"/v1/qr-groups/{group['id']}", headers=bearer(key))).json()["rules"]) == 1

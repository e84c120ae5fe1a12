"""The rules editor and the codes list's bulk actions, in a real browser against the real edge."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.browser.conftest import ContextFactory, Stack, expect, screenshots, sign_in
from tests.control_plane.ingest.test_enrich import ANDROID_FIREFOX, IPHONE_SAFARI

pytestmark = pytest.mark.browser


async def _scan(short_url: str, user_agent: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as edge:
        return await edge.get(short_url, headers={"User-Agent": user_agent})


async def _api(stack: Stack, key: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    async with httpx.AsyncClient(base_url=stack.control_plane, headers={"Authorization": f"Bearer {key}"},
                                 timeout=30) as api:
        response = await api.request(method, path, json=body)
    assert response.status_code < 300, response.text
    return response.json()


async def test_a_rule_added_in_the_browser_is_followed_by_the_next_scan(stack: Stack, new_context: ContextFactory):
    stack.user("ana@example.com", "editor")
    key = stack.api_key()
    group = await _api(stack, key, "POST", "/v1/qr-groups", {
        "name": "Table cards", "destination": {"type": "url", "url": "https://example.com/menu"},
        "url_params": {"utm_campaign": "fall24"}})
    codes = (await _api(stack, key, "POST", f"/v1/qr-groups/{group['id']}/codes", {"count": 2}))["data"]
    before = await _scan(codes[0]["short_url"], IPHONE_SAFARI)
    assert before.headers["location"] == "https://example.com/menu?utm_campaign=fall24"

    page = await (await new_context()).new_page()
    await sign_in(page, "ana@example.com")
    await page.goto(f"/app/groups/{group['id']}")
    add = page.locator("details.add-rule")
    await add.get_by_role("group", name="Device").get_by_label("ios").check()
    await add.get_by_label("Country").fill("DEU")  # refused by the API's own check, shown by the field
    await add.get_by_label("Send to URL").fill("https://apps.example.com/ios")
    await add.get_by_role("button", name="Add rule").click()
    error = page.locator("#rule-new-country-error")
    await expect(error).to_contain_text("must be an ISO 3166-1 alpha-2 country code")
    await expect(page.locator("#rule-new-country")).to_have_attribute("aria-invalid", "true")
    await screenshots(page, "group-rule-error")
    await add.get_by_label("Country").fill("")
    await add.get_by_role("button", name="Add rule").click()
    await expect(page.get_by_role("status")).to_have_text("Rule added. The next scan follows it.")
    await expect(page.locator("ol.rules > li > p")).to_have_text(
        "Rule 1: if device is ios → https://apps.example.com/ios")

    # The very next scans, on any code of the group: an iPhone follows the rule, an Android phone does not.
    iphone = await _scan(codes[1]["short_url"], IPHONE_SAFARI)
    assert iphone.status_code == 302 and iphone.headers["location"] == "https://apps.example.com/ios?utm_campaign=fall24"
    android = await _scan(codes[1]["short_url"], ANDROID_FIREFOX)
    assert android.headers["location"] == "https://example.com/menu?utm_campaign=fall24"

    # A split for everyone else, 1:1 between two pages.
    await page.get_by_label("Weight of variant 1").fill("1")
    await page.get_by_label("URL of variant 1").fill("https://example.com/a")
    await page.get_by_label("Weight of variant 2").fill("1")
    await page.get_by_label("URL of variant 2").fill("https://example.com/b")
    await page.get_by_role("button", name="Save split").click()
    await expect(page.get_by_role("status")).to_have_text("Split saved.")
    android = await _scan(codes[1]["short_url"], ANDROID_FIREFOX)
    assert android.headers["location"] in ("https://example.com/a?utm_campaign=fall24",
                                           "https://example.com/b?utm_campaign=fall24")
    assert (await _scan(codes[0]["short_url"], IPHONE_SAFARI)).headers["location"] == \
        "https://apps.example.com/ios?utm_campaign=fall24"
    await page.locator("#rules").scroll_into_view_if_needed()
    await screenshots(page, "group-rules")


async def test_select_all_then_pause_pauses_every_code_on_the_page(stack: Stack, new_context: ContextFactory):
    stack.user("ana@example.com", "editor")
    key = stack.api_key()
    codes = [await _api(stack, key, "POST", "/v1/qr-codes", {
        "name": f"Poster {n}", "destination": {"type": "url", "url": f"https://example.com/{n}"}})
        for n in range(5)]
    assert (await _scan(codes[0]["short_url"], IPHONE_SAFARI)).status_code == 302

    page = await (await new_context()).new_page()
    await sign_in(page, "ana@example.com")
    await page.goto("/app/codes")
    await page.get_by_label("Select all codes on this page").check()
    for code in codes:
        await expect(page.get_by_label(f"Select {code['name']}")).to_be_checked()
    await expect(page.locator("#bulk-count")).to_have_text("5 selected")
    await page.get_by_label("Select Poster 3").uncheck()
    await expect(page.get_by_label("Select all codes on this page")).not_to_be_checked()
    await page.get_by_label("Select all codes on this page").check()
    await page.get_by_label("With the selected codes").select_option("pause")
    await screenshots(page, "codes-bulk")
    await page.get_by_role("button", name="Apply to selected").click()
    await expect(page.get_by_role("status")).to_have_text("Updated 5 codes.")

    listed = await _api(stack, key, "GET", "/v1/qr-codes?limit=100")
    assert [c["status"] for c in listed["data"]] == ["inactive"] * 5
    for code in codes:  # paused: the edge stops redirecting at once
        assert (await _scan(code["short_url"], IPHONE_SAFARI)).status_code == 404

"""A print run from the dashboard: group with URL params, 20 codes, a re-route the edge follows, analytics."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from tests.browser.conftest import ContextFactory, Stack, expect, screenshots, sign_in
from tests.control_plane.ingest.test_enrich import IPHONE_SAFARI

pytestmark = pytest.mark.browser


async def _scan(stack: Stack, short_url: str) -> str:
    async with httpx.AsyncClient(timeout=10) as edge:
        response = await edge.get(short_url, headers={"User-Agent": IPHONE_SAFARI})
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def _codes(stack: Stack, key: str, group_id: str) -> list[dict]:
    async with httpx.AsyncClient(base_url=stack.control_plane, headers={"Authorization": f"Bearer {key}"},
                                 timeout=10) as api:
        listing = (await api.get("/v1/qr-codes", params={"group_id": group_id, "limit": 100})).json()
    return listing["data"]


async def test_a_print_run_made_in_the_dashboard_is_followed_by_the_edge(stack: Stack, new_context: ContextFactory):
    stack.user("ana@example.com")
    key = stack.api_key()
    page = await (await new_context()).new_page()
    await sign_in(page, "ana@example.com")
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Groups").click()
    await page.get_by_role("link", name="New group").click()
    await page.get_by_label("Name").fill("Fall menus")
    await page.get_by_label("Destination URL").fill("https://example.com/menu")
    await page.get_by_label("URL parameters").fill("utm_campaign=fall24\nutm_source=print")
    await screenshots(page, "group-new")
    await page.get_by_role("button", name="Create group").click()
    await expect(page.get_by_role("status")).to_have_text("Group created.")
    group_id = page.url.split("/app/groups/")[1].split("?")[0]

    await page.get_by_label("How many").fill("20")
    await page.get_by_role("button", name="Mint codes").click()
    await expect(page.get_by_role("status")).to_have_text("Minted 20 codes.")
    codes = await _codes(stack, key, group_id)
    assert len(codes) == 20
    assert await _scan(stack, codes[0]["short_url"]) == \
        "https://example.com/menu?utm_campaign=fall24&utm_source=print"

    await page.get_by_label("Destination URL").fill("https://example.com/winter")
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.get_by_role("status")).to_contain_text("Saved.")
    await screenshots(page, "group-detail")
    # The very next scan, on any of the 20 codes, follows the change: no cache waits it out.
    assert await _scan(stack, codes[7]["short_url"]) == \
        "https://example.com/winter?utm_campaign=fall24&utm_source=print"

    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Groups").click()
    row = page.get_by_role("row").filter(has_text="Fall menus")
    await expect(row.get_by_role("cell").nth(3)).to_have_text("20")
    await screenshots(page, "groups")
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Codes").click()
    await expect(page.get_by_role("row")).to_have_count(21)  # header + 20
    await screenshots(page, "codes")


async def test_analytics_chart_after_scans_through_the_real_edge(stack: Stack, new_context: ContextFactory):
    stack.user("ana@example.com")
    key = stack.api_key()
    async with httpx.AsyncClient(base_url=stack.control_plane, headers={"Authorization": f"Bearer {key}"},
                                 timeout=10) as api:
        code = (await api.post("/v1/qr-codes", json={"name": "Poster", "destination": {
            "type": "url", "url": "https://example.com/poster"}})).json()
    for _ in range(3):
        await _scan(stack, code["short_url"] + "?qr=1")
    page = await (await new_context()).new_page()
    await sign_in(page, "ana@example.com")
    # The ingest worker stores the scans within a second or so: reload until they are counted (bounded).
    for _ in range(40):
        await page.goto(f"/app/codes/{code['id']}/analytics")
        if (await page.locator("#total-scans").inner_text()) == "3":
            break
        await asyncio.sleep(0.25)
    await expect(page.locator("#total-scans")).to_have_text("3")
    chart = page.locator("#timeseries-chart svg")
    await expect(chart).to_be_visible()
    box = await chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    await expect(chart.locator("text", has_text="Unique visitors")).to_have_count(1)
    await expect(page.get_by_role("cell", name="camera", exact=True)).to_be_visible()
    await screenshots(page, "analytics")
    await page.get_by_label("hour").check()
    await page.get_by_label("Range").select_option("1")
    await page.get_by_role("button", name="Show").click()
    await expect(page).to_have_url(re.compile(r"range=1&group_by=hour"))
    await expect(page.locator("#total-scans")).to_have_text("3")

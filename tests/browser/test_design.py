from __future__ import annotations

import httpx
import pytest

from tests.browser.conftest import ContextFactory, Stack, expect, screenshots, sign_in

pytestmark = pytest.mark.browser


async def test_design_editor_previews_live_and_saves_the_apis_image(stack: Stack, new_context: ContextFactory):
    stack.user("ana@example.com")
    key = stack.api_key()
    async with httpx.AsyncClient(base_url=stack.control_plane, headers={"Authorization": f"Bearer {key}"},
                                 timeout=10) as api:
        code = (await api.post("/v1/qr-codes", json={"name": "Poster", "destination": {
            "type": "url", "url": "https://example.com/poster"}})).json()
        page = await (await new_context()).new_page()
        await sign_in(page, "ana@example.com")
        await page.goto(f"/app/codes/{code['id']}")
        await screenshots(page, "code-detail")
        await page.get_by_role("link", name="Design").click()
        preview = page.locator("#preview")
        verdict = page.locator("#verdict")
        before = await preview.get_attribute("src")
        await expect(verdict).to_contain_text("Scannable")

        await page.get_by_label("Foreground colour").fill("#0d47a1")
        await page.get_by_label("Background colour").fill("#fff8e1")
        await expect(preview).not_to_have_attribute("src", before or "")
        await expect(verdict).to_contain_text("Scannable")
        # A colour too faint to scan: the verdict says so while editing, before anything is saved.
        await page.get_by_label("Foreground colour").fill("#eeeeee")
        await expect(verdict).to_contain_text("contrast")
        await page.get_by_label("Foreground colour").fill("#0d47a1")
        await expect(verdict).to_contain_text("Scannable")
        await screenshots(page, "design")
        await page.get_by_role("button", name="Save design").click()
        await expect(page.get_by_role("status").first).to_contain_text("Saved.")

        saved = (await api.get(f"/v1/qr-codes/{code['id']}")).json()
        assert saved["design"]["colors"] == {"foreground": "#0d47a1", "background": "#fff8e1"}
        assert saved["image_url"] != code["image_url"]
        await expect(page.locator("#saved-image")).to_have_attribute("src", saved["image_url"])
        shown = await page.request.get(saved["image_url"])
        assert shown.ok
        from_api = await api.get(saved["image_url"])
        assert await shown.body() == from_api.content and from_api.content.startswith(b"\x89PNG")


async def test_a_viewer_reads_groups_and_codes_without_write_controls(stack: Stack, new_context: ContextFactory):
    stack.user("ana@example.com")
    stack.user("vic@example.com", "viewer")
    key = stack.api_key()
    async with httpx.AsyncClient(base_url=stack.control_plane, headers={"Authorization": f"Bearer {key}"},
                                 timeout=10) as api:
        group = (await api.post("/v1/qr-groups", json={"name": "Fall menus"})).json()
        code = (await api.post("/v1/qr-codes", json={"group_id": group["id"]})).json()
    context = await new_context("phone")
    page = await context.new_page()
    await sign_in(page, "vic@example.com")
    for path in ("/app/groups", f"/app/groups/{group['id']}", "/app/codes", f"/app/codes/{code['id']}",
                 f"/app/codes/{code['id']}/design"):
        await page.goto(path)
        await expect(page.get_by_role("heading", level=1)).to_be_visible()
        # Search and filter forms (GET) remain; no form in the page would change anything.
        writes = await page.locator("main form[method=post]").count()
        assert writes == 0, path
        await expect(page.get_by_role("link", name="New group")).to_have_count(0)
    await screenshots(page, "viewer-code-design")
    token = await page.evaluate("() => document.querySelector('input[name=csrf_token]').value")
    refused = await context.request.post(f"/app/groups/{group['id']}", form={"csrf_token": token, "name": "hacked"})
    assert refused.status == 403

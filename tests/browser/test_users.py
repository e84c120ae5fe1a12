from __future__ import annotations

import pytest

from tests.browser.conftest import PASSWORD, ContextFactory, Stack, expect, screenshots, sign_in

pytestmark = pytest.mark.browser


async def test_an_owner_invites_an_editor_who_signs_in(stack: Stack, new_context: ContextFactory):
    stack.user("ana@example.com")
    page = await (await new_context()).new_page()
    await sign_in(page, "ana@example.com")
    await page.get_by_role("link", name="Users").click()
    await page.get_by_label("E-mail").fill("ben@example.com")
    await page.get_by_label("Temporary password", exact=True).fill("short")
    await page.get_by_label("Role", exact=True).select_option("editor")
    await page.get_by_role("button", name="Invite").click()
    # The browser's own check (minlength) is not there: the server's message appears next to the field.
    await expect(page.locator("#invite-password-error")).to_contain_text("at least 10 characters")
    await page.get_by_label("Temporary password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Invite").click()
    await expect(page.get_by_role("status")).to_contain_text("ben@example.com can now sign in")
    await screenshots(page, "users")
    ben = await (await new_context("phone")).new_page()
    await sign_in(ben, "ben@example.com")
    await expect(ben.get_by_text("ben@example.com (editor)")).to_be_visible()


async def test_a_viewer_sees_no_write_control_and_is_refused_server_side(stack: Stack, new_context: ContextFactory):
    stack.user("ana@example.com")
    stack.user("vic@example.com", "viewer")
    context = await new_context()
    page = await context.new_page()
    await sign_in(page, "vic@example.com")
    await expect(page.get_by_role("link", name="Users")).to_have_count(0)
    # Only the viewer's own session controls are buttons: nothing that changes the organisation's objects.
    buttons = sorted(await page.get_by_role("button").all_inner_texts())
    assert buttons == ["Sign out", "Switch to test"]
    response = await page.goto("/app/users")
    assert response is not None and response.status == 403
    await expect(page.get_by_role("alert")).to_contain_text("Your role (viewer) cannot do this")
    token = await page.evaluate("() => document.querySelector('input[name=csrf_token]').value")
    forged = await context.request.post("/app/users", form={"csrf_token": token, "email": "eve@example.com",
                                                            "role": "owner", "password": PASSWORD})
    assert forged.status == 403

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import ContextFactory, Stack, expect, screenshots, sign_in

pytestmark = pytest.mark.browser


async def test_sign_in_shows_the_overview_and_sign_out_ends_the_session(stack: Stack, new_context: ContextFactory):
    stack.user("ana@example.com")
    page = await (await new_context()).new_page()
    await page.goto("/app/")
    await expect(page).to_have_url(re.compile(r"/app/login\?next=/app/$"))
    await screenshots(page, "login")
    await sign_in(page, "ana@example.com")
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    await expect(page.get_by_text("ana@example.com (owner)")).to_be_visible()
    await screenshots(page, "overview")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in to scanroute")).to_be_visible()
    await page.goto("/app/")
    await expect(page).to_have_url(re.compile(r"/app/login"))


async def test_a_wrong_password_is_reported_on_the_form(stack: Stack, new_context: ContextFactory):
    stack.user("ana@example.com")
    page = await (await new_context()).new_page()
    await sign_in(page, "ana@example.com", "not the password")
    await expect(page.get_by_role("alert")).to_have_text("The e-mail address or password is wrong.")
    await expect(page.get_by_label("E-mail")).to_have_value("ana@example.com")


async def test_a_post_without_the_csrf_token_is_refused(stack: Stack, new_context: ContextFactory):
    stack.user("ana@example.com")
    context = await new_context()
    page = await context.new_page()
    await sign_in(page, "ana@example.com")
    # The browser's own session cookie goes with it, as with a form posted from another site.
    refused = await context.request.post("/app/mode", form={"mode": "test", "back": "/app/"}, max_redirects=0)
    assert refused.status == 403
    await page.reload()
    await expect(page.get_by_text("Live", exact=True)).to_be_visible()


async def test_the_mode_switch_shows_test_mode(stack: Stack, new_context: ContextFactory):
    stack.user("ana@example.com")
    page = await (await new_context()).new_page()
    await sign_in(page, "ana@example.com")
    await page.get_by_role("button", name="Switch to test").click()
    await expect(page.get_by_text("Test mode", exact=True)).to_be_visible()
    await page.get_by_role("button", name="Switch to live").click()
    await expect(page.get_by_text("Live", exact=True)).to_be_visible()


async def test_the_keyboard_alone_signs_in_and_focus_is_visible(stack: Stack, new_context: ContextFactory):
    stack.user("ana@example.com")
    page = await (await new_context()).new_page()
    await page.goto("/app/login")
    await expect(page.get_by_label("E-mail")).to_be_focused()
    await page.keyboard.type("ana@example.com")
    await page.keyboard.press("Tab")
    await page.keyboard.type("correct horse battery")
    await page.keyboard.press("Tab")
    button = page.get_by_role("button", name="Sign in")
    await expect(button).to_be_focused()
    assert await button.evaluate("e => getComputedStyle(e).outlineStyle") == "solid"
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    await page.keyboard.press("Tab")  # the skip link comes first on every page
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()

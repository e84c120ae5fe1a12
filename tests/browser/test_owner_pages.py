from __future__ import annotations

import httpx
import pytest

from tests.browser.conftest import ContextFactory, Stack, expect, screenshots, sign_in

pytestmark = pytest.mark.browser


async def test_an_owner_makes_a_key_once_ticks_codes_in_bulk_and_reads_usage(stack: Stack,
                                                                             new_context: ContextFactory):
    stack.user("ana@example.com")
    page = await (await new_context()).new_page()
    await sign_in(page, "ana@example.com")
    nav = page.get_by_role("navigation", name="Main")

    await nav.get_by_role("link", name="API keys").click()
    await page.get_by_label("Name").fill("print shop")
    await page.get_by_label("qr:write").uncheck()
    await page.get_by_role("button", name="Create key").click()
    secret = await page.get_by_label("Secret of print shop").input_value()
    assert secret.startswith("qr_live_")
    await screenshots(page, "api-keys")
    async with httpx.AsyncClient(base_url=stack.control_plane, headers={"Authorization": f"Bearer {secret}"},
                                 timeout=10) as reader:
        assert (await reader.get("/v1/qr-codes")).status_code == 200
    await page.goto("/app/api-keys")  # the secret was on the answer to the form only
    await expect(page.get_by_label("Secret of print shop")).to_have_count(0)
    await expect(page.get_by_role("cell", name="print shop")).to_be_visible()

    async with httpx.AsyncClient(base_url=stack.control_plane, timeout=10,
                                 headers={"Authorization": f"Bearer {stack.api_key()}"}) as api:
        ids = [(await api.post("/v1/qr-codes", json={"name": f"Card {n}"})).json()["id"] for n in range(3)]
        await nav.get_by_role("link", name="Codes").click()
        await page.get_by_label("Select Card 0").check()
        await page.get_by_label("Select Card 2").check()
        await page.get_by_label("With the selected codes").select_option("pause")
        await page.get_by_role("button", name="Apply to selected").click()
        await expect(page.get_by_role("status")).to_have_text("Updated 2 codes.")
        statuses = [(await api.get(f"/v1/qr-codes/{i}")).json()["status"] for i in ids]
    assert statuses == ["inactive", None, "inactive"]

    await nav.get_by_role("link", name="Webhooks").click()
    await screenshots(page, "webhooks")
    await nav.get_by_role("link", name="Usage").click()
    await expect(page.locator("#generated")).to_have_text("3")
    await screenshots(page, "usage")

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest

from tests.conftest import KeyFactory, bearer
from tests.control_plane.dashboard.conftest import SignedIn, post_form

DESIGN = {"foreground": "#1b5e20", "background": "#fffde7", "body": "rounded", "eye_frame": "square",
          "eye_ball": "circle", "error_correction": "Q", "margin": "4"}


async def _code(api: httpx.AsyncClient, key: str) -> dict:
    created = await api.post("/v1/qr-codes", json={"destination": {"type": "url", "url": "https://example.com"}},
                             headers=bearer(key))
    return created.json()


DesignPage = Callable[..., Awaitable[tuple[str, dict, httpx.AsyncClient, str]]]


@pytest.fixture
def on_design_page(signed_in: SignedIn, make_key: KeyFactory, api: httpx.AsyncClient) -> DesignPage:
    """A key, a code made with it, and a browser signed in as a user of `role`: (key, code, browser, design page)."""

    async def make(email: str = "ana@example.com", role: str = "owner") -> tuple[str, dict, httpx.AsyncClient, str]:
        key = await make_key()
        code = await _code(api, key)
        return key, code, await signed_in(email, role), f"/app/codes/{code['id']}/design"

    return make


async def test_the_preview_renders_the_edited_design_and_judges_it(on_design_page: DesignPage):
    _, _, client, page = await on_design_page("vic@example.com", "viewer")
    good = (await client.get(f"{page}/preview", params=DESIGN)).json()
    assert good["scannable"] and good["image"].startswith("data:image/svg+xml;base64,")
    faint = (await client.get(f"{page}/preview",
                              params={**DESIGN, "foreground": "#eeeeee", "background": "#ffffff"})).json()
    assert not faint["scannable"] and "contrast" in faint["verdict"].lower()
    assert faint["image"] != good["image"]


async def test_saving_a_design_changes_the_apis_image(on_design_page: DesignPage, api: httpx.AsyncClient):
    key, code, client, page = await on_design_page()
    saved = await post_form(client, page, page, DESIGN)
    assert saved.status_code == 303
    after = (await api.get(f"/v1/qr-codes/{code['id']}", headers=bearer(key))).json()
    assert after["design"]["colors"] == {"foreground": "#1b5e20", "background": "#fffde7"}
    assert after["design"]["shapes"]["body"] == "rounded" and after["image_url"] != code["image_url"]
    assert f'id="saved-image" src="{after["image_url"]}"' in (await client.get(page)).text


async def test_an_unscannable_design_is_refused_with_the_apis_reason(on_design_page: DesignPage,
                                                                     api: httpx.AsyncClient):
    key, code, client, page = await on_design_page()
    refused = await post_form(client, page, page, {**DESIGN, "foreground": "#f0f0f0", "background": "#ffffff"})
    assert refused.status_code == 422 and "contrast" in refused.text.lower()
    assert (await api.get(f"/v1/qr-codes/{code['id']}", headers=bearer(key))).json()["image_url"] == code["image_url"]


async def test_a_quiet_zone_that_is_no_number_is_refused_with_a_message(on_design_page: DesignPage,
                                                                        api: httpx.AsyncClient):
    key, code, client, page = await on_design_page()
    for margin in ("\u00b2", "9" * 5000):  # `str.isdigit` takes "²"; int() refuses both
        preview = await client.get(f"{page}/preview", params={**DESIGN, "margin": margin})
        assert preview.status_code == 200, preview.text
        assert not preview.json()["scannable"] and "valid integer" in preview.json()["verdict"]
        refused = await post_form(client, page, page, {**DESIGN, "margin": margin})
        assert refused.status_code == 422 and "valid integer" in refused.text
    assert (await api.get(f"/v1/qr-codes/{code['id']}", headers=bearer(key))).json()["design"] == code["design"]
